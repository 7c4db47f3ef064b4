"""Characters: create (multipart), get, list, delete, history; and image uploads for pose references."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gateway import user_uploads
from gateway.deps import CallerDep, GatewayDep, IdempotencyDep
from gateway.schemas import (
    NAME_PATTERN,
    PLAIN_TEXT,
    CharacterCreated,
    CharacterDeleted,
    CharacterOut,
    CharacterPage,
    CharacterPatch,
    CharacterSheetIn,
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
    name: Annotated[
        str, Form(min_length=1, max_length=200, pattern=NAME_PATTERN, description="Character name.")
    ],
    consent: Annotated[bool, Form(description="You confirm you may use these images of this person.")],
    description: Annotated[
        str, Form(max_length=4000, pattern=PLAIN_TEXT, description="Who the character is.")
    ] = "",
    image: Annotated[
        list[UploadFile] | None, File(description="1-5 reference photos (field `image` or `image[]`).")
    ] = None,
    image_list: Annotated[list[UploadFile] | None, File(alias="image[]", include_in_schema=False)] = None,
    face_description: Annotated[
        str | None, Form(max_length=1000, description="Sheet: the face, in words.")
    ] = None,
    hair: Annotated[str | None, Form(max_length=200, description="Sheet: hair colour and style.")] = None,
    eyes: Annotated[str | None, Form(max_length=100, description="Sheet: eye colour.")] = None,
    distinctive_marks: Annotated[
        list[str] | None, Form(description="Sheet: scars, tattoos, freckles... (one per field).")
    ] = None,
    semantic_tags: Annotated[list[str] | None, Form(description="Sheet: tags (one per field).")] = None,
    must_keep_traits: Annotated[
        list[str] | None, Form(description="Sheet: traits every prompt must keep (one per field).")
    ] = None,
) -> dict[str, Any]:
    """Register a character from 1-5 reference photos, with an optional character sheet. Images are decoded and
    re-encoded without metadata."""
    sheet = _sheet(
        face_description=face_description,
        hair=hair,
        eyes=eyes,
        distinctive_marks=distinctive_marks,
        semantic_tags=semantic_tags,
        must_keep_traits=must_keep_traits,
    )
    files = await _read([*(image or []), *(image_list or [])])
    return await gw.create_character(
        who,
        name=name,
        description=description,
        consent=consent,
        files=files,
        sheet=sheet,
        idempotency_key=idem,
    )


def _sheet(**fields: Any) -> dict[str, Any]:
    """The sheet fields of a form, checked as the JSON sheet is (400 naming the field otherwise)."""
    try:
        sheet = CharacterSheetIn(**fields)
    except ValidationError as exc:  # answered like any other invalid form field
        raise RequestValidationError([{**e, "loc": ("form", *e["loc"])} for e in exc.errors()]) from None
    return sheet.model_dump(exclude_none=True)


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


@router.patch(
    "/characters/{character_id}",
    operation_id="update_character",
    response_model=CharacterOut,
)
async def update_character(
    character_id: str, body: CharacterPatch, who: CallerDep, gw: GatewayDep
) -> dict[str, Any]:
    """Edit a character's name, description and sheet: the fields sent replace theirs, the rest stay. The next
    scene's prompt is composed from the new sheet (cached prompts of the old one are not used)."""
    return await gw.update_character(
        who,
        character_id,
        name=body.name,
        description=body.description,
        sheet=body.sheet.model_dump(exclude_none=True) if body.sheet else {},
    )


@router.delete("/characters/{character_id}", operation_id="delete_character", response_model=CharacterDeleted)
async def delete_character(character_id: str, who: CallerDep, gw: GatewayDep) -> dict[str, Any]:
    """Erase a character everywhere (rows, vectors, images): the right to be forgotten."""
    return await gw.delete_character(who, character_id)


_FROZEN = {423: {"model": ErrorBody, "description": "The character is frozen while a report is reviewed."}}


@router.get(
    "/characters/{character_id}/history",
    operation_id="character_history",
    response_model=HistoryPage,
    responses=_FROZEN,
)
@router.get(
    "/character/{character_id}/history",
    operation_id="character_history_seed_path",
    response_model=HistoryPage,
    summary="Character History (the seed's path)",
    responses=_FROZEN,
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
    responses={409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
)
async def upload_image(
    who: CallerDep,
    gw: GatewayDep,
    file: Annotated[UploadFile, File(description="An image (e.g. a pose reference).")],
) -> dict[str, Any]:
    """Store an image under your uploads (re-encoded without metadata); use its `uri` as pose_image_url. Uploads
    are deleted after IDLOCK_GATEWAY_UPLOAD_TTL_S (7 days), and a user holds at most
    IDLOCK_GATEWAY_MAX_UPLOADS_PER_USER of them (409 `quota_exceeded`)."""
    (upload,) = await _read([file])
    return await user_uploads.upload(gw, who, upload)
