"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    code: str = Field(
        description="Stable machine-readable name, e.g. not_found, invalid_argument, rate_limited."
    )
    message: str = Field(description="What was wrong, for people.")
    details: Any = Field(
        None, description="Extra structured information (e.g. which fields failed validation)."
    )


class ErrorBody(BaseModel):
    error: ErrorDetail


#: what the gateway accepts as an email address (`gateway.users.normalize_email` checks the same)
#: (control characters and spaces spelled out: `\s` means different sets to Python, Rust and test generators)
EMAIL_PATTERN = r"^[^@\x00-\x20\x7f-\xa0]{1,64}@[^@\x00-\x20\x7f-\xa0]+\.[^@\x00-\x20\x7f-\xa0]+$"


class Credentials(Strict):
    email: str = Field(max_length=320, pattern=EMAIL_PATTERN, description="Email address (case-insensitive).")
    password: str = Field(min_length=1, max_length=1024, description="Password.")


class Registration(Credentials):
    name: str = Field("", max_length=200, description="How you are called (optional).")
    password: str = Field(
        min_length=1,
        max_length=1024,
        description="Password: at least IDLOCK_GATEWAY_PASSWORD_MIN_LENGTH characters (the document states the "
        "running gateway's limit).",
    )


class RegisteredUser(BaseModel):
    user_id: str
    email: str
    name: str
    is_admin: bool


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires.")
    expires_at: int = Field(description="Expiry as a Unix timestamp.")


class ApiKeyCreate(Strict):
    name: str = Field("", max_length=100, description="A label for the key (e.g. the service that uses it).")


class ApiKeyCreated(BaseModel):
    api_key_id: str
    api_key: str = Field(description="The key itself: shown only in this response, store it now.")
    name: str
    created_at: str


class ApiKeyInfo(BaseModel):
    api_key_id: str
    name: str
    created_at: str
    last_used_at: str | None
    revoked: bool


class ReferenceQuality(BaseModel):
    index: int
    accepted: bool
    faces_found: int
    issues: list[str] = Field(description="Why the photo is weak or refused (e.g. small face, blurry).")


#: text people type: no control characters but tab and line breaks (spelled out, as for EMAIL_PATTERN)
PLAIN_TEXT = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
#: a name: plain text with at least one character that is not a space
NAME_PATTERN = r"^[^\x00-\x1f\x7f]*[^\x00-\x20\x7f][^\x00-\x1f\x7f]*$"
SheetItem = Annotated[str, Field(min_length=1, max_length=200, pattern=PLAIN_TEXT)]


class CharacterSheetIn(Strict):
    """A character sheet's fields: each one given replaces the stored one (lists replace whole lists)."""

    face_description: str | None = Field(
        None, max_length=1000, pattern=PLAIN_TEXT, description="The face, in words."
    )
    hair: str | None = Field(None, max_length=200, pattern=PLAIN_TEXT, description="Hair colour and style.")
    eyes: str | None = Field(None, max_length=100, pattern=PLAIN_TEXT, description="Eye colour.")
    distinctive_marks: list[SheetItem] | None = Field(
        None, max_length=20, description="Scars, tattoos, freckles... (each kept in every scene)."
    )
    semantic_tags: list[SheetItem] | None = Field(None, max_length=20, description="Tags (e.g. knight, elf).")
    must_keep_traits: list[SheetItem] | None = Field(
        None, max_length=20, description="Traits the prompt must always keep."
    )


class CharacterPatch(Strict):
    """Fields to change; a field left out (or null) stays as it is, and a body that changes nothing changes
    nothing."""

    name: str | None = Field(None, min_length=1, max_length=200, pattern=NAME_PATTERN)
    description: str | None = Field(
        None, max_length=4000, pattern=PLAIN_TEXT, description='Who the character is ("" clears it).'
    )
    sheet: CharacterSheetIn | None = None


class CharacterCreated(BaseModel):
    character_id: str
    semantic_vector_id: str
    status: str = Field(description="ready or needs_more_refs.")
    status_reasons: list[str] = []
    reference_quality: list[ReferenceQuality] = []


#: the most characters one scene holds
MAX_CAST = 4


class GenerateOptionsIn(Strict):
    # the schema says what the orchestrator enforces, so a client (and a contract test) can see that a duration
    # or a spoken line belongs to a video only
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"video": {"const": True}}, "required": ["video"]},
            "else": {"properties": {"video_duration_s": {"maximum": 0}, "dialogue": {"maxLength": 0}}},
        }
    )

    # flags and the duration take strict types: `false` is not a duration, nor `1` a flag (a JSON integer still
    # fills the float, and an integral float the seed, as JSON Schema allows)
    video: StrictBool = Field(False, description="Generate a video instead of an image.")
    refine_face: StrictBool = Field(
        False,
        description="Run the face refiner even when identity retention already passes (below the refine "
        "threshold it runs anyway).",
    )
    providers: list[str] = Field(
        default_factory=list, max_length=5, description="Preferred providers, in order."
    )
    seed: int = Field(
        0, ge=0, le=2**53 - 1, description="Seed for reproducible renders (0: random; at most 2^53 - 1)."
    )
    aspect_ratio: str = Field("", max_length=10, pattern=r"^(\d{1,2}:\d{1,2})?$", description="e.g. 16:9.")
    video_duration_s: StrictFloat = Field(0.0, ge=0, le=60, description="Video length (0: provider default).")
    dialogue: str = Field("", max_length=1000, description="Spoken line for video providers that support it.")
    watermark: StrictBool = Field(False, description="Watermark the result.")
    bypass_lora: StrictBool = Field(
        False,
        description="Render without the character's active LoRA (the base model), e.g. to compare the two.",
    )

    @model_validator(mode="after")
    def _video_only(self) -> GenerateOptionsIn:
        if (self.video_duration_s or self.dialogue) and not self.video:
            raise ValueError("video_duration_s and dialogue apply to videos only (set options.video)")
        return self


class GenerateIn(Strict):
    character_id: str | None = Field(
        None, min_length=1, max_length=100, description="The character of a scene of one (or character_ids)."
    )
    character_ids: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(
        None,
        description=f"A scene of several characters: 1 to {MAX_CAST}, each once, all yours and with consent. "
        "The first is the job's character_id.",
        # said in the schema; checked below with a message that names the rule
        json_schema_extra={"minItems": 1, "maxItems": MAX_CAST, "uniqueItems": True},
    )
    roles: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict,
        description="Optional role or place of each character in the scene, by character id (e.g. "
        '{"c_1": "on the left", "c_2": "on the right"}): left, center or right hold each face to its place.',
    )
    prompt: str = Field(min_length=1, max_length=4000, description="What happens in the scene.")
    pose_image_url: str | None = Field(
        None,
        max_length=2048,
        description=(
            "Optional pose reference: a storage URI returned by POST /api/v1/uploads, or a public https URL "
            "(private, loopback and link-local addresses are refused)."
        ),
    )
    style_overrides: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=20,
        description="Extra style or state instructions (e.g. 'worn leather armor').",
    )
    options: GenerateOptionsIn = Field(default_factory=GenerateOptionsIn)

    @model_validator(mode="after")
    def _cast(self) -> GenerateIn:
        ids = self.cast_ids()
        if not ids:
            raise ValueError("give character_id (one character) or character_ids (a scene of several)")
        if self.character_id and self.character_ids and self.character_id != self.character_ids[0]:
            raise ValueError("character_id must be the first of character_ids (or be left out)")
        if len(ids) > MAX_CAST:
            raise ValueError(f"a scene holds at most {MAX_CAST} characters, {len(ids)} were given")
        twice = sorted({c for c in ids if ids.count(c) > 1})
        if twice:
            raise ValueError(f"character {twice[0]} is listed twice in character_ids: list each once")
        stray = sorted(set(self.roles) - set(ids))
        if stray:
            raise ValueError(f"roles names {stray[0]}, which is not one of the scene's characters")
        return self

    def cast_ids(self) -> list[str]:
        return list(self.character_ids or ([self.character_id] if self.character_id else []))


class JobAccepted(BaseModel):
    job_id: str
    status: str
    created: bool = Field(description="False when the Idempotency-Key matched an earlier submission.")


class FeedbackIn(Strict):
    rating: Literal["up", "down"] = Field(description="Thumbs up or down.")
    comment: str = Field("", max_length=2000)


# ---- responses ---------------------------------------------------------------------------------------------------


class StoredImage(BaseModel):
    uri: str = Field(description="Storage URI (use it as pose_image_url).")
    url: str | None = Field(description="A URL to fetch it (presigned when the store is S3); null when none.")
    sha256: str
    mime: str
    width: int
    height: int


class StoredVideo(StoredImage):
    duration_s: float
    fps: float


class IdrOut(BaseModel):
    raw: float = Field(description="Cosine similarity of the face embeddings (encoder-specific scale).")
    calibrated: float = Field(description="Probability-like score on real same/different-person pairs.")
    verdict: str = Field(description="refine, borderline, pass or golden (on the calibrated score).")
    encoder: str


class StateTagsOut(BaseModel):
    clothing: list[str]
    injuries: list[str]
    props: list[str]
    setting: list[str]
    mood: list[str]


class CharacterSheetOut(BaseModel):
    face_description: str = ""
    hair: str = ""
    eyes: str = ""
    distinctive_marks: list[str] = []
    semantic_tags: list[str] = []
    must_keep_traits: list[str] = []


class CharacterOut(BaseModel):
    character_id: str
    name: str
    description: str
    status: str = Field(description="ready or needs_more_refs.")
    status_reasons: list[str]
    consent_given: bool
    consent_at: str | None
    semantic_vector_id: str
    encoder: str
    sheet: CharacterSheetOut
    reference_images: list[StoredImage | None]
    memory_version: int
    episode_count: int
    created_at: str | None
    updated_at: str | None


class CharacterSummary(BaseModel):
    character_id: str
    name: str
    description: str
    status: str
    episode_count: int
    created_at: str | None


class CharacterPage(BaseModel):
    items: list[CharacterSummary]
    next_page_token: str | None = Field(
        description="Pass it as page_token for the next page; null at the end."
    )


class StoreErasureOut(BaseModel):
    store: str = Field(
        description="database, vectors, objects, prompt_cache, or events (the other services told to erase "
        "the character's jobs, datasets and LoRAs)."
    )
    removed: int
    ok: bool
    error: str | None


class CharacterDeleted(BaseModel):
    character_id: str
    deleted: bool = Field(
        description="True when every store is clean. False: the erasure is recorded and is finished "
        "automatically (or by deleting again); the report says what is left."
    )
    report: list[StoreErasureOut] = Field(description="What was erased from each store.")


class StateItemOut(BaseModel):
    name: str
    since_scene: int = Field(description="The scene the attribute began in.")


class EndedItemOut(StateItemOut):
    until_scene: int = Field(description="The scene that ended it.")


Item = TypeVar("Item", bound=BaseModel)


class ByCategory(BaseModel, Generic[Item]):
    """Story-state items per category."""

    clothing: list[Item]
    injuries: list[Item]
    props: list[Item]
    setting: list[Item]
    mood: list[Item]


class EpisodeUseOut(BaseModel):
    episode_id: str
    scene_index: int
    reason: str = Field(
        description="recent (one of the last scenes) or relevant (found by similarity to the prompt)."
    )


class SceneContextOut(BaseModel):
    prompt: str = Field(description="The composed prompt sent to the renderer.")
    negative_prompt: str = Field(description="The negative tokens sent with it.")
    engine: str = Field(description="What composed it: template, or llm:<model>.")
    cached: bool = Field(description="The composition came from the prompt cache.")
    fallback_reason: str | None = Field(
        description="Why the template was used instead of the LLM, if it was."
    )
    memory_version: int
    state: ByCategory[StateItemOut] = Field(
        description="Story state in effect for the scene, each with the scene it began in."
    )
    ended: ByCategory[EndedItemOut] = Field(
        description="Attributes that ended in the last few scenes (no longer present)."
    )
    episodes: list[EpisodeUseOut] = Field(description="Earlier scenes the context used, and why.")


class FrameIdrOut(BaseModel):
    timestamp_s: float
    face_found: bool
    idr: IdrOut | None


class EpisodeOut(BaseModel):
    episode_id: str
    job_id: str
    scene_index: int
    kind: str = Field(description="image or video.")
    prompt: str
    description: str
    image: StoredImage | None
    video: StoredVideo | None
    idr: IdrOut | None
    tags: StateTagsOut = Field(description="Story state the scene added.")
    removed: StateTagsOut = Field(description="Story state the scene ended.")
    state_source: str = Field(description="vision or heuristic (a labelled fallback).")
    provider_label: str | None = Field(
        description="What rendered the scene (offline/compositor is the labelled offline fallback)."
    )
    copy_similarity: float | None = Field(
        description=(
            "Highest pixel-level similarity of the scene's face to a reference photo's (aligned face prints; "
            "copies score ~1). Null when nothing was compared."
        )
    )
    near_copy: bool | None = Field(
        description="The face is a near-copy of a reference photo: its IDR says little, and it is never golden."
    )
    duration_s: float
    dialogue: str
    frame_idrs: list[FrameIdrOut]
    context: SceneContextOut | None = Field(
        description="What the scene was made from (null for scenes recorded before this was kept)."
    )
    with_characters: list[CastMemberOut] = Field(
        default_factory=list, description="The other characters in the scene (empty for a scene of one)."
    )
    created_at: str | None


class HistoryPage(BaseModel):
    character_id: str
    story_summary: str
    items: list[EpisodeOut]
    next_page_token: str | None


class JobResultOut(BaseModel):
    image: StoredImage | None
    video: StoredVideo | None


class JobErrorOut(BaseModel):
    code: str
    message: str


class CastMemberOut(BaseModel):
    character_id: str
    name: str
    role: str


class CastResultOut(CastMemberOut):
    face_found: bool | None = Field(
        description="A face was assigned to the character (null until the scene is scored)."
    )
    idr_before: IdrOut | None = Field(description="Its face as rendered.")
    idr_after: IdrOut | None = Field(
        description="Its face in the result, when the refiner changed the image."
    )
    refined: bool = Field(description="Its own face was repaired.")
    note: str | None
    tags: StateTagsOut | None = Field(description="Story state the scene gave this character.")
    removed: StateTagsOut | None
    episode_id: str | None
    scene_index: int | None = Field(description="The scene's number in this character's own story.")


class JobOut(BaseModel):
    job_id: str
    status: str = Field(description="queued, running, succeeded, failed, needs_more_refs or cancelled.")
    character_id: str
    prompt: str
    pose_image_url: str | None
    style_overrides: list[str]
    options: dict[str, Any] = Field(description="The generation options, as submitted.")
    result: JobResultOut | None
    metrics: dict[str, Any] = Field(
        description=(
            "Timings per step, IDR before and after refinement, provider, the LoRA (lora_id, lora_version; null: "
            "none), cost, and copy_similarity / near_copy / copy_note: whether the result's face is a near-copy of "
            "a reference photo (when done)."
        )
    )
    error: JobErrorOut | None
    attempts: int
    provider_operation: str | None = Field(description="A video provider's long-running operation.")
    waiting_for: str | None = Field(
        None,
        description=(
            "What a running job is waiting for: a service it retries (render, memory, identity, ...) or storage "
            "(object storage full, not writable or unreachable). Null when it is not waiting."
        ),
    )
    waiting_since: str | None = Field(None, description="Since when it has been waiting (RFC 3339).")
    context: SceneContextOut | None = Field(
        description="What the scene is made from, once memory's context step has run."
    )
    characters: list[CastResultOut] = Field(
        default_factory=list,
        description="A scene of several characters: each one's face, IDR before and after its repair, state and "
        "episode (metrics.identity_bleed, metrics.placement_swapped and metrics.extra_faces say what the scene as "
        "a whole came to). Empty for a scene of one.",
    )
    created_at: str | None
    updated_at: str | None


class FeedbackRecorded(BaseModel):
    job_id: str
    rating: Literal["up", "down"]
    recorded: bool


class MeshHealth(BaseModel):
    status: Literal["ok", "degraded"]
    components: dict[str, str] = Field(description="SERVING, NOT_SERVING or UNREACHABLE (why) per component.")
    checked_in_s: float


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    ready: bool
    components: dict[str, str]


class UsageDayOut(BaseModel):
    user_id: str
    day: str = Field(description="The day (UTC), YYYY-MM-DD.")
    jobs_by_status: dict[str, int] = Field(
        description="Jobs submitted that day by their status now (queued, running, succeeded, failed, ...)."
    )
    renders_by_provider: dict[str, int] = Field(
        description="Jobs billed that day (they rendered), by the provider that rendered them."
    )
    credits: int = Field(description="Credits used: one per billed job.")
    cost_usd: float = Field(
        description="Estimated cost of the billed jobs (provider prices plus per-job cost)."
    )
    job_seconds: float = Field(description="Seconds the billed jobs took, submission to end.")


class UsagePage(BaseModel):
    from_day: str
    to_day: str
    items: list[UsageDayOut] = Field(description="Newest day first; within a day, by user id.")
    next_page_token: str | None = Field(
        description="Pass it as page_token for the next page; null at the end."
    )
