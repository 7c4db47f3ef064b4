import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idlock.v1 import common_pb2 as _common_pb2
from idlock.v1 import identity_service_pb2 as _identity_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CharacterStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHARACTER_STATUS_UNSPECIFIED: _ClassVar[CharacterStatus]
    CHARACTER_STATUS_READY: _ClassVar[CharacterStatus]
    CHARACTER_STATUS_NEEDS_MORE_REFS: _ClassVar[CharacterStatus]
CHARACTER_STATUS_UNSPECIFIED: CharacterStatus
CHARACTER_STATUS_READY: CharacterStatus
CHARACTER_STATUS_NEEDS_MORE_REFS: CharacterStatus

class CharacterSheet(_message.Message):
    __slots__ = ("face_description", "hair", "eyes", "distinctive_marks", "semantic_tags", "must_keep_traits")
    FACE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HAIR_FIELD_NUMBER: _ClassVar[int]
    EYES_FIELD_NUMBER: _ClassVar[int]
    DISTINCTIVE_MARKS_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_TAGS_FIELD_NUMBER: _ClassVar[int]
    MUST_KEEP_TRAITS_FIELD_NUMBER: _ClassVar[int]
    face_description: str
    hair: str
    eyes: str
    distinctive_marks: _containers.RepeatedScalarFieldContainer[str]
    semantic_tags: _containers.RepeatedScalarFieldContainer[str]
    must_keep_traits: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, face_description: _Optional[str] = ..., hair: _Optional[str] = ..., eyes: _Optional[str] = ..., distinctive_marks: _Optional[_Iterable[str]] = ..., semantic_tags: _Optional[_Iterable[str]] = ..., must_keep_traits: _Optional[_Iterable[str]] = ...) -> None: ...

class Character(_message.Message):
    __slots__ = ("id", "owner_id", "name", "description", "sheet", "consent_given", "consent_at", "status", "status_reasons", "encoder", "semantic_vector_id", "reference_images", "memory_version", "episode_count", "created_at", "updated_at", "identity")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    CONSENT_GIVEN_FIELD_NUMBER: _ClassVar[int]
    CONSENT_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASONS_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    SEMANTIC_VECTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPISODE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner_id: str
    name: str
    description: str
    sheet: CharacterSheet
    consent_given: bool
    consent_at: _timestamp_pb2.Timestamp
    status: CharacterStatus
    status_reasons: _containers.RepeatedScalarFieldContainer[str]
    encoder: str
    semantic_vector_id: str
    reference_images: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    memory_version: int
    episode_count: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    identity: _common_pb2.IdentityVector
    def __init__(self, id: _Optional[str] = ..., owner_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., sheet: _Optional[_Union[CharacterSheet, _Mapping]] = ..., consent_given: _Optional[bool] = ..., consent_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., status: _Optional[_Union[CharacterStatus, str]] = ..., status_reasons: _Optional[_Iterable[str]] = ..., encoder: _Optional[str] = ..., semantic_vector_id: _Optional[str] = ..., reference_images: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., memory_version: _Optional[int] = ..., episode_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ...) -> None: ...

class CreateCharacterRequest(_message.Message):
    __slots__ = ("owner_id", "name", "description", "sheet", "consent_given", "reference_images", "request_id")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    CONSENT_GIVEN_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    name: str
    description: str
    sheet: CharacterSheet
    consent_given: bool
    reference_images: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageInput]
    request_id: str
    def __init__(self, owner_id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., sheet: _Optional[_Union[CharacterSheet, _Mapping]] = ..., consent_given: _Optional[bool] = ..., reference_images: _Optional[_Iterable[_Union[_common_pb2.ImageInput, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateCharacterResponse(_message.Message):
    __slots__ = ("character", "reference_quality")
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_QUALITY_FIELD_NUMBER: _ClassVar[int]
    character: Character
    reference_quality: _containers.RepeatedCompositeFieldContainer[_identity_service_pb2.ReferenceQuality]
    def __init__(self, character: _Optional[_Union[Character, _Mapping]] = ..., reference_quality: _Optional[_Iterable[_Union[_identity_service_pb2.ReferenceQuality, _Mapping]]] = ...) -> None: ...

class GetCharacterRequest(_message.Message):
    __slots__ = ("character_id", "owner_id")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetCharacterResponse(_message.Message):
    __slots__ = ("character",)
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    character: Character
    def __init__(self, character: _Optional[_Union[Character, _Mapping]] = ...) -> None: ...

class ListCharactersRequest(_message.Message):
    __slots__ = ("owner_id", "page")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    page: _common_pb2.PageRequest
    def __init__(self, owner_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListCharactersResponse(_message.Message):
    __slots__ = ("characters", "next_page_token")
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    characters: _containers.RepeatedCompositeFieldContainer[Character]
    next_page_token: str
    def __init__(self, characters: _Optional[_Iterable[_Union[Character, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCharacterSheetRequest(_message.Message):
    __slots__ = ("character_id", "owner_id", "sheet", "name", "description", "replace_description")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    SHEET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPLACE_DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    sheet: CharacterSheet
    name: str
    description: str
    replace_description: bool
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., sheet: _Optional[_Union[CharacterSheet, _Mapping]] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., replace_description: _Optional[bool] = ...) -> None: ...

class UpdateCharacterSheetResponse(_message.Message):
    __slots__ = ("character",)
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    character: Character
    def __init__(self, character: _Optional[_Union[Character, _Mapping]] = ...) -> None: ...

class DeleteCharacterRequest(_message.Message):
    __slots__ = ("character_id", "owner_id")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class StoreErasure(_message.Message):
    __slots__ = ("store", "removed", "ok", "error")
    STORE_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    store: str
    removed: int
    ok: bool
    error: str
    def __init__(self, store: _Optional[str] = ..., removed: _Optional[int] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class DeleteCharacterResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: _containers.RepeatedCompositeFieldContainer[StoreErasure]
    def __init__(self, report: _Optional[_Iterable[_Union[StoreErasure, _Mapping]]] = ...) -> None: ...

class Episode(_message.Message):
    __slots__ = ("id", "character_id", "job_id", "scene_index", "kind", "prompt", "image", "video", "face_embedding", "idr", "tags", "removed", "description", "duration_s", "dialogue", "frame_idrs", "state_source", "created_at", "context", "provider_label", "copy", "cast")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    FACE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    IDR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDRS_FIELD_NUMBER: _ClassVar[int]
    STATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LABEL_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    id: str
    character_id: str
    job_id: str
    scene_index: int
    kind: _common_pb2.MediaKind
    prompt: str
    image: _common_pb2.ImageRef
    video: _common_pb2.VideoRef
    face_embedding: _common_pb2.IdentityVector
    idr: _common_pb2.IdrScore
    tags: _common_pb2.StateTags
    removed: _common_pb2.StateTags
    description: str
    duration_s: float
    dialogue: str
    frame_idrs: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameIdr]
    state_source: str
    created_at: _timestamp_pb2.Timestamp
    context: SceneContext
    provider_label: str
    copy: _common_pb2.CopyCheck
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastMember]
    def __init__(self, id: _Optional[str] = ..., character_id: _Optional[str] = ..., job_id: _Optional[str] = ..., scene_index: _Optional[int] = ..., kind: _Optional[_Union[_common_pb2.MediaKind, str]] = ..., prompt: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., face_embedding: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., idr: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., tags: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., removed: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., description: _Optional[str] = ..., duration_s: _Optional[float] = ..., dialogue: _Optional[str] = ..., frame_idrs: _Optional[_Iterable[_Union[_common_pb2.FrameIdr, _Mapping]]] = ..., state_source: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., context: _Optional[_Union[SceneContext, _Mapping]] = ..., provider_label: _Optional[str] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastMember, _Mapping]]] = ...) -> None: ...

class EpisodeUse(_message.Message):
    __slots__ = ("episode_id", "scene_index", "reason")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    scene_index: int
    reason: str
    def __init__(self, episode_id: _Optional[str] = ..., scene_index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SceneContext(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "engine", "fallback_reason", "cache_hit", "memory_version", "state", "ended", "episodes")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    engine: str
    fallback_reason: str
    cache_hit: bool
    memory_version: int
    state: _containers.RepeatedCompositeFieldContainer[StateItem]
    ended: _containers.RepeatedCompositeFieldContainer[StateItem]
    episodes: _containers.RepeatedCompositeFieldContainer[EpisodeUse]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., engine: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., cache_hit: _Optional[bool] = ..., memory_version: _Optional[int] = ..., state: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ..., ended: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ..., episodes: _Optional[_Iterable[_Union[EpisodeUse, _Mapping]]] = ...) -> None: ...

class RecordEpisodeRequest(_message.Message):
    __slots__ = ("episode",)
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ...) -> None: ...

class RecordEpisodeResponse(_message.Message):
    __slots__ = ("episode", "created", "consolidated", "model_seconds")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    episode: Episode
    created: bool
    consolidated: bool
    model_seconds: float
    def __init__(self, episode: _Optional[_Union[Episode, _Mapping]] = ..., created: _Optional[bool] = ..., consolidated: _Optional[bool] = ..., model_seconds: _Optional[float] = ...) -> None: ...

class ListHistoryRequest(_message.Message):
    __slots__ = ("character_id", "owner_id", "page")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    page: _common_pb2.PageRequest
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListHistoryResponse(_message.Message):
    __slots__ = ("episodes", "next_page_token", "story_summary")
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STORY_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    episodes: _containers.RepeatedCompositeFieldContainer[Episode]
    next_page_token: str
    story_summary: str
    def __init__(self, episodes: _Optional[_Iterable[_Union[Episode, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., story_summary: _Optional[str] = ...) -> None: ...

class StateItem(_message.Message):
    __slots__ = ("category", "name", "since_scene", "until_scene")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SINCE_SCENE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_SCENE_FIELD_NUMBER: _ClassVar[int]
    category: str
    name: str
    since_scene: int
    until_scene: int
    def __init__(self, category: _Optional[str] = ..., name: _Optional[str] = ..., since_scene: _Optional[int] = ..., until_scene: _Optional[int] = ...) -> None: ...

class GetCurrentStateRequest(_message.Message):
    __slots__ = ("character_id", "owner_id")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetCurrentStateResponse(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[StateItem]
    def __init__(self, items: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ...) -> None: ...

class GetAttributeHistoryRequest(_message.Message):
    __slots__ = ("character_id", "owner_id", "category", "name")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    category: str
    name: str
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., category: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class GetAttributeHistoryResponse(_message.Message):
    __slots__ = ("intervals",)
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    intervals: _containers.RepeatedCompositeFieldContainer[StateItem]
    def __init__(self, intervals: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ...) -> None: ...

class ComposedPrompt(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "engine", "fallback_reason")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    engine: str
    fallback_reason: str
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., engine: _Optional[str] = ..., fallback_reason: _Optional[str] = ...) -> None: ...

class BuildContextRequest(_message.Message):
    __slots__ = ("character_id", "owner_id", "user_prompt", "style_overrides")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STYLE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    user_prompt: str
    style_overrides: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., user_prompt: _Optional[str] = ..., style_overrides: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildContextResponse(_message.Message):
    __slots__ = ("semantic", "merged", "recent", "relevant", "current_state", "story_summary", "prompt", "cache_hit", "memory_version", "character", "model_seconds", "recently_ended")
    SEMANTIC_FIELD_NUMBER: _ClassVar[int]
    MERGED_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    RELEVANT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STATE_FIELD_NUMBER: _ClassVar[int]
    STORY_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RECENTLY_ENDED_FIELD_NUMBER: _ClassVar[int]
    semantic: _common_pb2.IdentityVector
    merged: _common_pb2.IdentityVector
    recent: _containers.RepeatedCompositeFieldContainer[Episode]
    relevant: _containers.RepeatedCompositeFieldContainer[Episode]
    current_state: _containers.RepeatedCompositeFieldContainer[StateItem]
    story_summary: str
    prompt: ComposedPrompt
    cache_hit: bool
    memory_version: int
    character: Character
    model_seconds: float
    recently_ended: _containers.RepeatedCompositeFieldContainer[StateItem]
    def __init__(self, semantic: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., merged: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., recent: _Optional[_Iterable[_Union[Episode, _Mapping]]] = ..., relevant: _Optional[_Iterable[_Union[Episode, _Mapping]]] = ..., current_state: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ..., story_summary: _Optional[str] = ..., prompt: _Optional[_Union[ComposedPrompt, _Mapping]] = ..., cache_hit: _Optional[bool] = ..., memory_version: _Optional[int] = ..., character: _Optional[_Union[Character, _Mapping]] = ..., model_seconds: _Optional[float] = ..., recently_ended: _Optional[_Iterable[_Union[StateItem, _Mapping]]] = ...) -> None: ...

class ConsolidateRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class ConsolidateResponse(_message.Message):
    __slots__ = ("summary", "engine", "up_to_scene")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SCENE_FIELD_NUMBER: _ClassVar[int]
    summary: str
    engine: str
    up_to_scene: int
    def __init__(self, summary: _Optional[str] = ..., engine: _Optional[str] = ..., up_to_scene: _Optional[int] = ...) -> None: ...

class BuildSceneContextRequest(_message.Message):
    __slots__ = ("owner_id", "user_prompt", "style_overrides", "cast")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_PROMPT_FIELD_NUMBER: _ClassVar[int]
    STYLE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    user_prompt: str
    style_overrides: _containers.RepeatedScalarFieldContainer[str]
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastMember]
    def __init__(self, owner_id: _Optional[str] = ..., user_prompt: _Optional[str] = ..., style_overrides: _Optional[_Iterable[str]] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastMember, _Mapping]]] = ...) -> None: ...

class BuildSceneContextResponse(_message.Message):
    __slots__ = ("prompt", "members", "model_seconds")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    prompt: ComposedPrompt
    members: _containers.RepeatedCompositeFieldContainer[BuildContextResponse]
    model_seconds: float
    def __init__(self, prompt: _Optional[_Union[ComposedPrompt, _Mapping]] = ..., members: _Optional[_Iterable[_Union[BuildContextResponse, _Mapping]]] = ..., model_seconds: _Optional[float] = ...) -> None: ...
