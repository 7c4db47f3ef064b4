"""Characters: create (multipart), get, list, delete, history; and image uploads for pose references."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile

from gateway.deps import CallerDep, GatewayDep, IdempotencyDep
from gateway.schemas import (
    CharacterCreated,
    CharacterDeleted,
    CharacterOut,
    CharacterPage,
    ErrorBody,
    HistoryPage,
    StoredImage,
)
from gateway.uploads import Upload

router = APIRouter(
    prefix="/api/v1",
    tags=["characters"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        429: {"model": ErrorBody},
    },
)
PageSize = Annotated[
    int,
    Query(ge=1, le=1000, description="Items per page; more than the gateway's page limit gives that many."),
]
PageToken = Annotated[str, Query(max_length=500, description="next_page_token of the previous page.")]


async def _read(files: list[UploadFile]) -> list[Upload]:
    return [Upload(filename=f.filename or "", data=await f.read()) for f in files]


def _page_size(gw, size: int) -> int:
    return min(size, gw.settings.page_size_max)


#: OpenAPI links: what a client (and schemathesis' stateful tests) can call next with a response's ids
CHARACTER_LINKS = {
    "GetCharacter": {
        "operationId": "get_character",
        "parameters": {"character_id": "$response.body#/character_id"},
    },
    "CharacterHistory": {
        "operationId": "character_history",
        "parameters": {"character_id": "$response.body#/character_id"},
    },
    "DeleteCharacter": {
        "operationId": "delete_character",
        "parameters": {"character_id": "$response.body#/character_id"},
    },
}


@router.post(
    "/characters",
    status_code=201,
    operation_id="create_character",
    response_model=CharacterCreated,
    responses={
        201: {"links": CHARACTER_LINKS},
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
    },
)
async def create_character(
    who: CallerDep,
    gw: GatewayDep,
    idem: IdempotencyDep,
    name: Annotated[str, Form(min_length=1, max_length=200, description="Character name.")],
    consent: Annotated[bool, Form(description="You confirm you may use these images of this person.")],
    description: Annotated[str, Form(max_length=4000, description="Who the character is.")] = "",
    image: Annotated[
        list[UploadFile] | None, File(description="1-5 reference photos (field `image` or `image[]`).")
    ] = None,
    image_list: Annotated[list[UploadFile] | None, File(alias="image[]", include_in_schema=False)] = None,
) -> dict[str, Any]:
    """Register a character from 1-5 reference photos. Images are decoded and re-encoded without metadata."""
    files = await _read([*(image or []), *(image_list or [])])
    return await gw.create_character(
        who, name=name, description=description, consent=consent, files=files, idempotency_key=idem
    )


@router.get(
    "/characters",
    operation_id="list_characters",
    response_model=CharacterPage,
    responses={
        200: {
            "links": {
                "GetFirstCharacter": {
                    "operationId": "get_character",
                    "parameters": {"character_id": "$response.body#/items/0/character_id"},
                },
                "NextPage": {
                    "operationId": "list_characters",
                    "parameters": {"page_token": "$response.body#/next_page_token"},
                },
            }
        }
    },
)
async def list_characters(
    who: CallerDep, gw: GatewayDep, page_size: PageSize = 20, page_token: PageToken = ""
) -> dict[str, Any]:
    """Your characters, paginated (`next_page_token`)."""
    return await gw.list_characters(who, _page_size(gw, page_size), page_token)


@router.get(
    "/characters/{character_id}",
    operation_id="get_character",
    response_model=CharacterOut,
    responses={
        200: {
            "links": {
                "Generate": {
                    "operationId": "generate",
                    "requestBody": {
                        "character_id": "$response.body#/character_id",
                        "prompt": "the character walks through a forest",
                    },
                },
                **{k: v for k, v in CHARACTER_LINKS.items() if k != "GetCharacter"},
            }
        }
    },
)
async def get_character(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Metadata of one of your characters."""
    return await gw.get_character(who, character_id)


@router.delete("/characters/{character_id}", operation_id="delete_character", response_model=CharacterDeleted)
async def delete_character(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Erase a character everywhere (rows, vectors, images): the right to be forgotten."""
    return await gw.delete_character(who, character_id)


@router.get(
    "/characters/{character_id}/history", operation_id="character_history", response_model=HistoryPage
)
@router.get(
    "/character/{character_id}/history",
    operation_id="character_history_seed_path",
    response_model=HistoryPage,
    summary="Character History (the seed's path)",
)
async def character_history(
    character_id: str, who: CallerDep, gw: GatewayDep, page_size: PageSize = 20, page_token: PageToken = ""
) -> dict[str, Any]:
    """Episodes of a character, newest first, with identity retention (IDR) and state tags."""
    return await gw.history(who, character_id, _page_size(gw, page_size), page_token)


@router.post(
    "/uploads",
    status_code=201,
    tags=["uploads"],
    response_model=StoredImage,
    responses={413: {"model": ErrorBody}},
)
async def upload_image(
    who: CallerDep,
    gw: GatewayDep,
    file: Annotated[UploadFile, File(description="An image (e.g. a pose reference).")],
) -> dict[str, Any]:
    """Store an image under your uploads (re-encoded without metadata); use its `uri` as pose_image_url."""
    (upload,) = await _read([file])
    return await gw.upload(who, upload)
