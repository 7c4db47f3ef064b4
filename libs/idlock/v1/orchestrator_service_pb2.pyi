import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idlock.v1 import common_pb2 as _common_pb2
from idlock.v1 import memory_service_pb2 as _memory_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FeedbackRating(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEEDBACK_RATING_UNSPECIFIED: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_UP: _ClassVar[FeedbackRating]
    FEEDBACK_RATING_DOWN: _ClassVar[FeedbackRating]
FEEDBACK_RATING_UNSPECIFIED: FeedbackRating
FEEDBACK_RATING_UP: FeedbackRating
FEEDBACK_RATING_DOWN: FeedbackRating

class GenerationOptions(_message.Message):
    __slots__ = ("video", "refine_face", "providers", "bypass_lora", "watermark", "seed", "video_duration_s", "dialogue", "aspect_ratio")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    REFINE_FACE_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    BYPASS_LORA_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    VIDEO_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    video: bool
    refine_face: bool
    providers: _containers.RepeatedScalarFieldContainer[str]
    bypass_lora: bool
    watermark: bool
    seed: int
    video_duration_s: float
    dialogue: str
    aspect_ratio: str
    def __init__(self, video: _Optional[bool] = ..., refine_face: _Optional[bool] = ..., providers: _Optional[_Iterable[str]] = ..., bypass_lora: _Optional[bool] = ..., watermark: _Optional[bool] = ..., seed: _Optional[int] = ..., video_duration_s: _Optional[float] = ..., dialogue: _Optional[str] = ..., aspect_ratio: _Optional[str] = ...) -> None: ...

class JobMetrics(_message.Message):
    __slots__ = ("step_seconds", "idr_before", "idr_after", "refined", "refine_needed", "provider", "model", "provider_label", "fallback_used", "lora_id", "prompt_engine", "state_source", "tags", "scene_index", "total_seconds", "estimated_cost_usd", "video_duration_s", "frames_scored", "frame_idr_min", "frame_idr_mean", "regenerated", "frame_idrs", "attempts", "refine_note", "step_model_seconds", "copy", "copy_note", "paid_calls", "paid_call_repeated", "moderation", "cast", "extra_faces", "identity_bleed", "placement_swapped", "cast_note")
    class StepSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class StepModelSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IDR_BEFORE_FIELD_NUMBER: _ClassVar[int]
    IDR_AFTER_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    REFINE_NEEDED_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LABEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_ENGINE_FIELD_NUMBER: _ClassVar[int]
    STATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    VIDEO_DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FRAMES_SCORED_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDR_MIN_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDR_MEAN_FIELD_NUMBER: _ClassVar[int]
    REGENERATED_FIELD_NUMBER: _ClassVar[int]
    FRAME_IDRS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    REFINE_NOTE_FIELD_NUMBER: _ClassVar[int]
    STEP_MODEL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    COPY_NOTE_FIELD_NUMBER: _ClassVar[int]
    PAID_CALLS_FIELD_NUMBER: _ClassVar[int]
    PAID_CALL_REPEATED_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FACES_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_BLEED_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SWAPPED_FIELD_NUMBER: _ClassVar[int]
    CAST_NOTE_FIELD_NUMBER: _ClassVar[int]
    step_seconds: _containers.ScalarMap[str, float]
    idr_before: _common_pb2.IdrScore
    idr_after: _common_pb2.IdrScore
    refined: bool
    refine_needed: bool
    provider: str
    model: str
    provider_label: str
    fallback_used: bool
    lora_id: str
    prompt_engine: str
    state_source: str
    tags: _common_pb2.StateTags
    scene_index: int
    total_seconds: float
    estimated_cost_usd: float
    video_duration_s: float
    frames_scored: int
    frame_idr_min: float
    frame_idr_mean: float
    regenerated: bool
    frame_idrs: _containers.RepeatedCompositeFieldContainer[_common_pb2.FrameIdr]
    attempts: int
    refine_note: str
    step_model_seconds: _containers.ScalarMap[str, float]
    copy: _common_pb2.CopyCheck
    copy_note: str
    paid_calls: int
    paid_call_repeated: bool
    moderation: str
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastResult]
    extra_faces: _containers.RepeatedScalarFieldContainer[int]
    identity_bleed: bool
    placement_swapped: bool
    cast_note: str
    def __init__(self, step_seconds: _Optional[_Mapping[str, float]] = ..., idr_before: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., idr_after: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., refined: _Optional[bool] = ..., refine_needed: _Optional[bool] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., provider_label: _Optional[str] = ..., fallback_used: _Optional[bool] = ..., lora_id: _Optional[str] = ..., prompt_engine: _Optional[str] = ..., state_source: _Optional[str] = ..., tags: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., scene_index: _Optional[int] = ..., total_seconds: _Optional[float] = ..., estimated_cost_usd: _Optional[float] = ..., video_duration_s: _Optional[float] = ..., frames_scored: _Optional[int] = ..., frame_idr_min: _Optional[float] = ..., frame_idr_mean: _Optional[float] = ..., regenerated: _Optional[bool] = ..., frame_idrs: _Optional[_Iterable[_Union[_common_pb2.FrameIdr, _Mapping]]] = ..., attempts: _Optional[int] = ..., refine_note: _Optional[str] = ..., step_model_seconds: _Optional[_Mapping[str, float]] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ..., copy_note: _Optional[str] = ..., paid_calls: _Optional[int] = ..., paid_call_repeated: _Optional[bool] = ..., moderation: _Optional[str] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastResult, _Mapping]]] = ..., extra_faces: _Optional[_Iterable[int]] = ..., identity_bleed: _Optional[bool] = ..., placement_swapped: _Optional[bool] = ..., cast_note: _Optional[str] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "owner_id", "character_id", "prompt", "pose_image_uri", "style_overrides", "options", "status", "result_image", "result_video", "metrics", "error_code", "error_message", "attempts", "created_at", "updated_at", "provider_operation", "context", "waiting_for", "waiting_since", "cast")
    ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    POSE_IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    STYLE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RESULT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_VIDEO_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_OPERATION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    WAITING_SINCE_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    id: str
    owner_id: str
    character_id: str
    prompt: str
    pose_image_uri: str
    style_overrides: _containers.RepeatedScalarFieldContainer[str]
    options: GenerationOptions
    status: _common_pb2.JobStatus
    result_image: _common_pb2.ImageRef
    result_video: _common_pb2.VideoRef
    metrics: JobMetrics
    error_code: str
    error_message: str
    attempts: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    provider_operation: str
    context: _memory_service_pb2.SceneContext
    waiting_for: str
    waiting_since: _timestamp_pb2.Timestamp
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastMember]
    def __init__(self, id: _Optional[str] = ..., owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., prompt: _Optional[str] = ..., pose_image_uri: _Optional[str] = ..., style_overrides: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., result_image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., result_video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., metrics: _Optional[_Union[JobMetrics, _Mapping]] = ..., error_code: _Optional[str] = ..., error_message: _Optional[str] = ..., attempts: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., provider_operation: _Optional[str] = ..., context: _Optional[_Union[_memory_service_pb2.SceneContext, _Mapping]] = ..., waiting_for: _Optional[str] = ..., waiting_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastMember, _Mapping]]] = ...) -> None: ...

class SubmitGenerationRequest(_message.Message):
    __slots__ = ("owner_id", "character_id", "prompt", "pose_image_uri", "style_overrides", "options", "idempotency_key", "cast")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    POSE_IMAGE_URI_FIELD_NUMBER: _ClassVar[int]
    STYLE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    character_id: str
    prompt: str
    pose_image_uri: str
    style_overrides: _containers.RepeatedScalarFieldContainer[str]
    options: GenerationOptions
    idempotency_key: str
    cast: _containers.RepeatedCompositeFieldContainer[_common_pb2.CastMember]
    def __init__(self, owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., prompt: _Optional[str] = ..., pose_image_uri: _Optional[str] = ..., style_overrides: _Optional[_Iterable[str]] = ..., options: _Optional[_Union[GenerationOptions, _Mapping]] = ..., idempotency_key: _Optional[str] = ..., cast: _Optional[_Iterable[_Union[_common_pb2.CastMember, _Mapping]]] = ...) -> None: ...

class SubmitGenerationResponse(_message.Message):
    __slots__ = ("job", "created")
    JOB_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    job: Job
    created: bool
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "owner_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id", "owner_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("owner_id", "character_id", "page")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    character_id: str
    page: _common_pb2.PageRequest
    def __init__(self, owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id", "owner_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job", "event", "message")
    JOB_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    job: Job
    event: str
    message: str
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., event: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RecordFeedbackRequest(_message.Message):
    __slots__ = ("job_id", "owner_id", "rating", "comment")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    rating: FeedbackRating
    comment: str
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., rating: _Optional[_Union[FeedbackRating, str]] = ..., comment: _Optional[str] = ...) -> None: ...

class RecordFeedbackResponse(_message.Message):
    __slots__ = ("recorded",)
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    recorded: bool
    def __init__(self, recorded: _Optional[bool] = ...) -> None: ...

class ListUsageRequest(_message.Message):
    __slots__ = ("owner_id", "from_day", "to_day", "page")
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_DAY_FIELD_NUMBER: _ClassVar[int]
    TO_DAY_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    from_day: str
    to_day: str
    page: _common_pb2.PageRequest
    def __init__(self, owner_id: _Optional[str] = ..., from_day: _Optional[str] = ..., to_day: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class UsageDay(_message.Message):
    __slots__ = ("owner_id", "day", "jobs_by_status", "renders_by_provider", "credits", "cost_usd", "job_seconds")
    class JobsByStatusEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class RendersByProviderEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    JOBS_BY_STATUS_FIELD_NUMBER: _ClassVar[int]
    RENDERS_BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    CREDITS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    JOB_SECONDS_FIELD_NUMBER: _ClassVar[int]
    owner_id: str
    day: str
    jobs_by_status: _containers.ScalarMap[str, int]
    renders_by_provider: _containers.ScalarMap[str, int]
    credits: int
    cost_usd: float
    job_seconds: float
    def __init__(self, owner_id: _Optional[str] = ..., day: _Optional[str] = ..., jobs_by_status: _Optional[_Mapping[str, int]] = ..., renders_by_provider: _Optional[_Mapping[str, int]] = ..., credits: _Optional[int] = ..., cost_usd: _Optional[float] = ..., job_seconds: _Optional[float] = ...) -> None: ...

class ListUsageResponse(_message.Message):
    __slots__ = ("days", "next_page_token", "from_day", "to_day")
    DAYS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FROM_DAY_FIELD_NUMBER: _ClassVar[int]
    TO_DAY_FIELD_NUMBER: _ClassVar[int]
    days: _containers.RepeatedCompositeFieldContainer[UsageDay]
    next_page_token: str
    from_day: str
    to_day: str
    def __init__(self, days: _Optional[_Iterable[_Union[UsageDay, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., from_day: _Optional[str] = ..., to_day: _Optional[str] = ...) -> None: ...
