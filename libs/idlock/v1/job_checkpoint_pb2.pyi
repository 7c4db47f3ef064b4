from idlock.v1 import common_pb2 as _common_pb2
from idlock.v1 import memory_service_pb2 as _memory_service_pb2
from idlock.v1 import render_service_pb2 as _render_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobCheckpoint(_message.Message):
    __slots__ = ("context", "render", "score", "refine", "state", "record", "regenerate", "operations", "result_video")
    class OperationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: VideoOperation
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[VideoOperation, _Mapping]] = ...) -> None: ...
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    REFINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    REGENERATE_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RESULT_VIDEO_FIELD_NUMBER: _ClassVar[int]
    context: ContextStep
    render: RenderStep
    score: ScoreStep
    refine: RefineStep
    state: StateStep
    record: RecordStep
    regenerate: RegenerateStep
    operations: _containers.MessageMap[str, VideoOperation]
    result_video: _common_pb2.VideoRef
    def __init__(self, context: _Optional[_Union[ContextStep, _Mapping]] = ..., render: _Optional[_Union[RenderStep, _Mapping]] = ..., score: _Optional[_Union[ScoreStep, _Mapping]] = ..., refine: _Optional[_Union[RefineStep, _Mapping]] = ..., state: _Optional[_Union[StateStep, _Mapping]] = ..., record: _Optional[_Union[RecordStep, _Mapping]] = ..., regenerate: _Optional[_Union[RegenerateStep, _Mapping]] = ..., operations: _Optional[_Mapping[str, VideoOperation]] = ..., result_video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ...) -> None: ...

class ContextStep(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "engine", "fallback_reason", "memory_version", "identity", "references", "model_seconds", "seconds", "cache_hit", "state", "ended", "episodes", "cast")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    engine: str
    fallback_reason: str
    memory_version: int
    identity: _common_pb2.IdentityVector
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    model_seconds: float
    seconds: float
    cache_hit: bool
    state: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.StateItem]
    ended: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.StateItem]
    episodes: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.EpisodeUse]
    cast: _containers.RepeatedCompositeFieldContainer[CastContext]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., engine: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., memory_version: _Optional[int] = ..., identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., model_seconds: _Optional[float] = ..., seconds: _Optional[float] = ..., cache_hit: _Optional[bool] = ..., state: _Optional[_Iterable[_Union[_memory_service_pb2.StateItem, _Mapping]]] = ..., ended: _Optional[_Iterable[_Union[_memory_service_pb2.StateItem, _Mapping]]] = ..., episodes: _Optional[_Iterable[_Union[_memory_service_pb2.EpisodeUse, _Mapping]]] = ..., cast: _Optional[_Iterable[_Union[CastContext, _Mapping]]] = ...) -> None: ...

class CastContext(_message.Message):
    __slots__ = ("member", "placement", "identity", "references", "state", "ended", "memory_version", "episodes")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    MEMORY_VERSION_FIELD_NUMBER: _ClassVar[int]
    EPISODES_FIELD_NUMBER: _ClassVar[int]
    member: _common_pb2.CastMember
    placement: str
    identity: _common_pb2.IdentityVector
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    state: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.StateItem]
    ended: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.StateItem]
    memory_version: int
    episodes: _containers.RepeatedCompositeFieldContainer[_memory_service_pb2.EpisodeUse]
    def __init__(self, member: _Optional[_Union[_common_pb2.CastMember, _Mapping]] = ..., placement: _Optional[str] = ..., identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., state: _Optional[_Iterable[_Union[_memory_service_pb2.StateItem, _Mapping]]] = ..., ended: _Optional[_Iterable[_Union[_memory_service_pb2.StateItem, _Mapping]]] = ..., memory_version: _Optional[int] = ..., episodes: _Optional[_Iterable[_Union[_memory_service_pb2.EpisodeUse, _Mapping]]] = ...) -> None: ...

class RenderStep(_message.Message):
    __slots__ = ("image", "provenance", "video", "operation_name", "polls", "seconds")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    OPERATION_NAME_FIELD_NUMBER: _ClassVar[int]
    POLLS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    provenance: _render_service_pb2.RenderProvenance
    video: _common_pb2.VideoRef
    operation_name: str
    polls: int
    seconds: float
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., provenance: _Optional[_Union[_render_service_pb2.RenderProvenance, _Mapping]] = ..., video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., operation_name: _Optional[str] = ..., polls: _Optional[int] = ..., seconds: _Optional[float] = ...) -> None: ...

class ScoreStep(_message.Message):
    __slots__ = ("face_found", "faces_detected", "idr", "embedding", "note", "duration_s", "fps", "first_frame", "frames", "frames_scored", "frame_idr_min", "frame_idr_mean", "seconds", "copy", "cast", "extra_faces", "identity_bleed", "placement_swapped", "cast_note")
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    IDR_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    FIRST_FRAME_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SCORED_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDR_MIN_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDR_MEAN_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FACES_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_BLEED_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SWAPPED_FIELD_NUMBER: _ClassVar[int]
    CAST_NOTE_FIELD_NUMBER: _ClassVar[int]
    face_found: bool
    faces_detected: int
    idr: _common_pb2.IdrScore
    embedding: _common_pb2.IdentityVector
    note: str
    duration_s: float
    fps: float
    first_frame: _common_pb2.ImageRef
    frames: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameIdr]
    frames_scored: int
    frame_idr_min: float
    frame_idr_mean: float
    seconds: float
    copy: _common_pb2.CopyCheck
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastResult]
    extra_faces: _containers.RepeatedScalarFieldContainer[int]
    identity_bleed: bool
    placement_swapped: bool
    cast_note: str
    def __init__(self, face_found: _Optional[bool] = ..., faces_detected: _Optional[int] = ..., idr: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., embedding: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., note: _Optional[str] = ..., duration_s: _Optional[float] = ..., fps: _Optional[float] = ..., first_frame: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., frames: _Optional[_Iterable[_Union[_common_pb2.FrameIdr, _Mapping]]] = ..., frames_scored: _Optional[int] = ..., frame_idr_min: _Optional[float] = ..., frame_idr_mean: _Optional[float] = ..., seconds: _Optional[float] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastResult, _Mapping]]] = ..., extra_faces: _Optional[_Iterable[int]] = ..., identity_bleed: _Optional[bool] = ..., placement_swapped: _Optional[bool] = ..., cast_note: _Optional[str] = ...) -> None: ...

class RefineStep(_message.Message):
    __slots__ = ("needed", "refined", "note", "idr_after", "attempts", "image", "seconds", "copy_after", "cast")
    NEEDED_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    IDR_AFTER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COPY_AFTER_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    needed: bool
    refined: bool
    note: str
    idr_after: _common_pb2.IdrScore
    attempts: int
    image: _common_pb2.ImageRef
    seconds: float
    copy_after: _common_pb2.CopyCheck
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastResult]
    def __init__(self, needed: _Optional[bool] = ..., refined: _Optional[bool] = ..., note: _Optional[str] = ..., idr_after: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., attempts: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., seconds: _Optional[float] = ..., copy_after: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastResult, _Mapping]]] = ...) -> None: ...

class StateStep(_message.Message):
    __slots__ = ("added", "removed", "description", "source", "fallback_reason", "model_seconds", "last_frame", "seconds", "cast")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_FRAME_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    added: _common_pb2.StateTags
    removed: _common_pb2.StateTags
    description: str
    source: str
    fallback_reason: str
    model_seconds: float
    last_frame: _common_pb2.ImageRef
    seconds: float
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastResult]
    def __init__(self, added: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., removed: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., description: _Optional[str] = ..., source: _Optional[str] = ..., fallback_reason: _Optional[str] = ..., model_seconds: _Optional[float] = ..., last_frame: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., seconds: _Optional[float] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastResult, _Mapping]]] = ...) -> None: ...

class RecordStep(_message.Message):
    __slots__ = ("episode_id", "scene_index", "created", "consolidated", "model_seconds", "seconds", "cast")
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    CONSOLIDATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    episode_id: str
    scene_index: int
    created: bool
    consolidated: bool
    model_seconds: float
    seconds: float
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastResult]
    def __init__(self, episode_id: _Optional[str] = ..., scene_index: _Optional[int] = ..., created: _Optional[bool] = ..., consolidated: _Optional[bool] = ..., model_seconds: _Optional[float] = ..., seconds: _Optional[float] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastResult, _Mapping]]] = ...) -> None: ...

class RegenerateStep(_message.Message):
    __slots__ = ("needed", "regenerated", "attempts", "extra_cost_usd", "render", "score", "note", "seconds")
    NEEDED_FIELD_NUMBER: _ClassVar[int]
    REGENERATED_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    EXTRA_COST_USD_FIELD_NUMBER: _ClassVar[int]
    RENDER_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    needed: bool
    regenerated: bool
    attempts: int
    extra_cost_usd: float
    render: RenderStep
    score: ScoreStep
    note: str
    seconds: float
    def __init__(self, needed: _Optional[bool] = ..., regenerated: _Optional[bool] = ..., attempts: _Optional[int] = ..., extra_cost_usd: _Optional[float] = ..., render: _Optional[_Union[RenderStep, _Mapping]] = ..., score: _Optional[_Union[ScoreStep, _Mapping]] = ..., note: _Optional[str] = ..., seconds: _Optional[float] = ...) -> None: ...

class VideoOperation(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...
