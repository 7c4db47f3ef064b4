import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idlock.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_STATE_UNSPECIFIED: _ClassVar[TrainingState]
    TRAINING_STATE_QUEUED: _ClassVar[TrainingState]
    TRAINING_STATE_RUNNING: _ClassVar[TrainingState]
    TRAINING_STATE_SUCCEEDED: _ClassVar[TrainingState]
    TRAINING_STATE_FAILED: _ClassVar[TrainingState]

class LoraStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LORA_STATUS_UNSPECIFIED: _ClassVar[LoraStatus]
    LORA_STATUS_TRAINING: _ClassVar[LoraStatus]
    LORA_STATUS_VALIDATING: _ClassVar[LoraStatus]
    LORA_STATUS_ACTIVE: _ClassVar[LoraStatus]
    LORA_STATUS_ARCHIVED: _ClassVar[LoraStatus]
    LORA_STATUS_REJECTED: _ClassVar[LoraStatus]
TRAINING_STATE_UNSPECIFIED: TrainingState
TRAINING_STATE_QUEUED: TrainingState
TRAINING_STATE_RUNNING: TrainingState
TRAINING_STATE_SUCCEEDED: TrainingState
TRAINING_STATE_FAILED: TrainingState
LORA_STATUS_UNSPECIFIED: LoraStatus
LORA_STATUS_TRAINING: LoraStatus
LORA_STATUS_VALIDATING: LoraStatus
LORA_STATUS_ACTIVE: LoraStatus
LORA_STATUS_ARCHIVED: LoraStatus
LORA_STATUS_REJECTED: LoraStatus

class GoldenImage(_message.Message):
    __slots__ = ("id", "character_id", "job_id", "image", "prompt", "scene_index", "idr", "tags", "collected_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    IDR_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    character_id: str
    job_id: str
    image: _common_pb2.ImageRef
    prompt: str
    scene_index: int
    idr: _common_pb2.IdrScore
    tags: _common_pb2.StateTags
    collected_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., character_id: _Optional[str] = ..., job_id: _Optional[str] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., prompt: _Optional[str] = ..., scene_index: _Optional[int] = ..., idr: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., tags: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListGoldenImagesRequest(_message.Message):
    __slots__ = ("character_id", "page")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    page: _common_pb2.PageRequest
    def __init__(self, character_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListGoldenImagesResponse(_message.Message):
    __slots__ = ("images", "next_page_token")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[GoldenImage]
    next_page_token: str
    def __init__(self, images: _Optional[_Iterable[_Union[GoldenImage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DatasetStats(_message.Message):
    __slots__ = ("candidates", "kept", "dropped")
    class DroppedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    candidates: int
    kept: int
    dropped: _containers.ScalarMap[str, int]
    def __init__(self, candidates: _Optional[int] = ..., kept: _Optional[int] = ..., dropped: _Optional[_Mapping[str, int]] = ...) -> None: ...

class BuildDatasetRequest(_message.Message):
    __slots__ = ("character_id", "resolution")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    resolution: int
    def __init__(self, character_id: _Optional[str] = ..., resolution: _Optional[int] = ...) -> None: ...

class BuildDatasetResponse(_message.Message):
    __slots__ = ("dataset_uri", "version", "stats")
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    dataset_uri: str
    version: int
    stats: DatasetStats
    def __init__(self, dataset_uri: _Optional[str] = ..., version: _Optional[int] = ..., stats: _Optional[_Union[DatasetStats, _Mapping]] = ...) -> None: ...

class TrainingRun(_message.Message):
    __slots__ = ("id", "character_id", "dataset_uri", "state", "step", "total_steps", "loss", "eta_s", "lora_id", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    character_id: str
    dataset_uri: str
    state: TrainingState
    step: int
    total_steps: int
    loss: float
    eta_s: float
    lora_id: str
    error: str
    def __init__(self, id: _Optional[str] = ..., character_id: _Optional[str] = ..., dataset_uri: _Optional[str] = ..., state: _Optional[_Union[TrainingState, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., eta_s: _Optional[float] = ..., lora_id: _Optional[str] = ..., error: _Optional[str] = ...) -> None: ...

class StartTrainingRequest(_message.Message):
    __slots__ = ("character_id", "dataset_uri", "rank", "steps", "learning_rate", "batch_size", "request_id")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    dataset_uri: str
    rank: int
    steps: int
    learning_rate: float
    batch_size: int
    request_id: str
    def __init__(self, character_id: _Optional[str] = ..., dataset_uri: _Optional[str] = ..., rank: _Optional[int] = ..., steps: _Optional[int] = ..., learning_rate: _Optional[float] = ..., batch_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class StartTrainingResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: TrainingRun
    def __init__(self, run: _Optional[_Union[TrainingRun, _Mapping]] = ...) -> None: ...

class GetTrainingRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetTrainingRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: TrainingRun
    def __init__(self, run: _Optional[_Union[TrainingRun, _Mapping]] = ...) -> None: ...

class LoraModel(_message.Message):
    __slots__ = ("id", "character_id", "version", "file", "training_images", "baseline_idr", "final_idr", "status", "created_at", "activated_at", "metrics")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    TRAINING_IMAGES_FIELD_NUMBER: _ClassVar[int]
    BASELINE_IDR_FIELD_NUMBER: _ClassVar[int]
    FINAL_IDR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVATED_AT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    id: str
    character_id: str
    version: int
    file: _common_pb2.LoraRef
    training_images: int
    baseline_idr: float
    final_idr: float
    status: LoraStatus
    created_at: _timestamp_pb2.Timestamp
    activated_at: _timestamp_pb2.Timestamp
    metrics: _containers.ScalarMap[str, float]
    def __init__(self, id: _Optional[str] = ..., character_id: _Optional[str] = ..., version: _Optional[int] = ..., file: _Optional[_Union[_common_pb2.LoraRef, _Mapping]] = ..., training_images: _Optional[int] = ..., baseline_idr: _Optional[float] = ..., final_idr: _Optional[float] = ..., status: _Optional[_Union[LoraStatus, str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., activated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metrics: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ValidateLoraRequest(_message.Message):
    __slots__ = ("lora_id",)
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    lora_id: str
    def __init__(self, lora_id: _Optional[str] = ...) -> None: ...

class ValidateLoraResponse(_message.Message):
    __slots__ = ("lora", "approved", "reason")
    LORA_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    lora: LoraModel
    approved: bool
    reason: str
    def __init__(self, lora: _Optional[_Union[LoraModel, _Mapping]] = ..., approved: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class GetActiveLoraRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class GetActiveLoraResponse(_message.Message):
    __slots__ = ("lora",)
    LORA_FIELD_NUMBER: _ClassVar[int]
    lora: LoraModel
    def __init__(self, lora: _Optional[_Union[LoraModel, _Mapping]] = ...) -> None: ...

class ActivateLoraRequest(_message.Message):
    __slots__ = ("lora_id",)
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    lora_id: str
    def __init__(self, lora_id: _Optional[str] = ...) -> None: ...

class ActivateLoraResponse(_message.Message):
    __slots__ = ("lora",)
    LORA_FIELD_NUMBER: _ClassVar[int]
    lora: LoraModel
    def __init__(self, lora: _Optional[_Union[LoraModel, _Mapping]] = ...) -> None: ...

class ArchiveLoraRequest(_message.Message):
    __slots__ = ("lora_id",)
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    lora_id: str
    def __init__(self, lora_id: _Optional[str] = ...) -> None: ...

class ArchiveLoraResponse(_message.Message):
    __slots__ = ("lora",)
    LORA_FIELD_NUMBER: _ClassVar[int]
    lora: LoraModel
    def __init__(self, lora: _Optional[_Union[LoraModel, _Mapping]] = ...) -> None: ...

class RollbackLoraRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class RollbackLoraResponse(_message.Message):
    __slots__ = ("active",)
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    active: LoraModel
    def __init__(self, active: _Optional[_Union[LoraModel, _Mapping]] = ...) -> None: ...

class ListLorasRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class ListLorasResponse(_message.Message):
    __slots__ = ("loras",)
    LORAS_FIELD_NUMBER: _ClassVar[int]
    loras: _containers.RepeatedCompositeFieldContainer[LoraModel]
    def __init__(self, loras: _Optional[_Iterable[_Union[LoraModel, _Mapping]]] = ...) -> None: ...

class DeleteCharacterArtifactsRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class DeleteCharacterArtifactsResponse(_message.Message):
    __slots__ = ("objects_removed", "rows_removed")
    OBJECTS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    ROWS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    objects_removed: int
    rows_removed: int
    def __init__(self, objects_removed: _Optional[int] = ..., rows_removed: _Optional[int] = ...) -> None: ...

class GetLearningReportRequest(_message.Message):
    __slots__ = ("character_id",)
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    def __init__(self, character_id: _Optional[str] = ...) -> None: ...

class IdrStats(_message.Message):
    __slots__ = ("count", "mean", "std", "min")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    count: int
    mean: float
    std: float
    min: float
    def __init__(self, count: _Optional[int] = ..., mean: _Optional[float] = ..., std: _Optional[float] = ..., min: _Optional[float] = ...) -> None: ...

class IdrGroup(_message.Message):
    __slots__ = ("key", "stats")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    key: str
    stats: IdrStats
    def __init__(self, key: _Optional[str] = ..., stats: _Optional[_Union[IdrStats, _Mapping]] = ...) -> None: ...

class LearningDecisionRecord(_message.Message):
    __slots__ = ("decision", "reason", "lora_id", "recent_idr", "baseline_idr", "recent_jobs", "baseline_jobs", "at")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_IDR_FIELD_NUMBER: _ClassVar[int]
    BASELINE_IDR_FIELD_NUMBER: _ClassVar[int]
    RECENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_JOBS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    decision: str
    reason: str
    lora_id: str
    recent_idr: float
    baseline_idr: float
    recent_jobs: int
    baseline_jobs: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, decision: _Optional[str] = ..., reason: _Optional[str] = ..., lora_id: _Optional[str] = ..., recent_idr: _Optional[float] = ..., baseline_idr: _Optional[float] = ..., recent_jobs: _Optional[int] = ..., baseline_jobs: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetLearningReportResponse(_message.Message):
    __slots__ = ("character_id", "overall", "by_week", "by_provider", "by_lora", "state", "decisions", "golden_images", "golden_until_training", "stage", "recent")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OVERALL_FIELD_NUMBER: _ClassVar[int]
    BY_WEEK_FIELD_NUMBER: _ClassVar[int]
    BY_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    BY_LORA_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_IMAGES_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_UNTIL_TRAINING_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    RECENT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    overall: IdrStats
    by_week: _containers.RepeatedCompositeFieldContainer[IdrGroup]
    by_provider: _containers.RepeatedCompositeFieldContainer[IdrGroup]
    by_lora: _containers.RepeatedCompositeFieldContainer[IdrGroup]
    state: str
    decisions: _containers.RepeatedCompositeFieldContainer[LearningDecisionRecord]
    golden_images: int
    golden_until_training: int
    stage: str
    recent: _containers.RepeatedCompositeFieldContainer[IdrPoint]
    def __init__(self, character_id: _Optional[str] = ..., overall: _Optional[_Union[IdrStats, _Mapping]] = ..., by_week: _Optional[_Iterable[_Union[IdrGroup, _Mapping]]] = ..., by_provider: _Optional[_Iterable[_Union[IdrGroup, _Mapping]]] = ..., by_lora: _Optional[_Iterable[_Union[IdrGroup, _Mapping]]] = ..., state: _Optional[str] = ..., decisions: _Optional[_Iterable[_Union[LearningDecisionRecord, _Mapping]]] = ..., golden_images: _Optional[int] = ..., golden_until_training: _Optional[int] = ..., stage: _Optional[str] = ..., recent: _Optional[_Iterable[_Union[IdrPoint, _Mapping]]] = ...) -> None: ...

class IdrPoint(_message.Message):
    __slots__ = ("at", "idr", "lora_id", "provider", "job_id")
    AT_FIELD_NUMBER: _ClassVar[int]
    IDR_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    idr: float
    lora_id: str
    provider: str
    job_id: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., idr: _Optional[float] = ..., lora_id: _Optional[str] = ..., provider: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...
