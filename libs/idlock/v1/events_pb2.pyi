import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from idlock.v1 import common_pb2 as _common_pb2
from idlock.v1 import orchestrator_service_pb2 as _orchestrator_service_pb2
from idlock.v1 import trainer_service_pb2 as _trainer_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateJobWork(_message.Message):
    __slots__ = ("job_id", "owner_id", "character_id", "prompt", "style_overrides", "video")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    STYLE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    character_id: str
    prompt: str
    style_overrides: _containers.RepeatedScalarFieldContainer[str]
    video: bool
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., prompt: _Optional[str] = ..., style_overrides: _Optional[_Iterable[str]] = ..., video: _Optional[bool] = ...) -> None: ...

class TrainJobWork(_message.Message):
    __slots__ = ("run_id", "character_id")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    character_id: str
    def __init__(self, run_id: _Optional[str] = ..., character_id: _Optional[str] = ...) -> None: ...

class CharacterCreated(_message.Message):
    __slots__ = ("character_id", "owner_id", "status", "at")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    status: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., status: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CharacterDeleted(_message.Message):
    __slots__ = ("character_id", "owner_id", "at")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    owner_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, character_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job_id", "owner_id", "character_id", "status", "step", "message", "result_image", "result_video", "metrics", "error_code", "at", "prompt", "scene_index", "waiting_for")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_IMAGE_FIELD_NUMBER: _ClassVar[int]
    RESULT_VIDEO_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    character_id: str
    status: _common_pb2.JobStatus
    step: str
    message: str
    result_image: _common_pb2.ImageRef
    result_video: _common_pb2.VideoRef
    metrics: _orchestrator_service_pb2.JobMetrics
    error_code: str
    at: _timestamp_pb2.Timestamp
    prompt: str
    scene_index: int
    waiting_for: str
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., status: _Optional[_Union[_common_pb2.JobStatus, str]] = ..., step: _Optional[str] = ..., message: _Optional[str] = ..., result_image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., result_video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., metrics: _Optional[_Union[_orchestrator_service_pb2.JobMetrics, _Mapping]] = ..., error_code: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prompt: _Optional[str] = ..., scene_index: _Optional[int] = ..., waiting_for: _Optional[str] = ...) -> None: ...

class EpisodeRecorded(_message.Message):
    __slots__ = ("character_id", "episode_id", "job_id", "scene_index", "kind", "at")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    episode_id: str
    job_id: str
    scene_index: int
    kind: _common_pb2.MediaKind
    at: _timestamp_pb2.Timestamp
    def __init__(self, character_id: _Optional[str] = ..., episode_id: _Optional[str] = ..., job_id: _Optional[str] = ..., scene_index: _Optional[int] = ..., kind: _Optional[_Union[_common_pb2.MediaKind, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class MemoryConsolidated(_message.Message):
    __slots__ = ("character_id", "up_to_scene", "engine", "at")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    UP_TO_SCENE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    up_to_scene: int
    engine: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, character_id: _Optional[str] = ..., up_to_scene: _Optional[int] = ..., engine: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GoldenCollected(_message.Message):
    __slots__ = ("character_id", "job_id", "golden_id", "idr", "at")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GOLDEN_ID_FIELD_NUMBER: _ClassVar[int]
    IDR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    job_id: str
    golden_id: str
    idr: _common_pb2.IdrScore
    at: _timestamp_pb2.Timestamp
    def __init__(self, character_id: _Optional[str] = ..., job_id: _Optional[str] = ..., golden_id: _Optional[str] = ..., idr: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class LoraEvent(_message.Message):
    __slots__ = ("lora_id", "character_id", "status", "step", "total_steps", "loss", "eta_s", "at", "run_id")
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ETA_S_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    lora_id: str
    character_id: str
    status: _trainer_service_pb2.LoraStatus
    step: int
    total_steps: int
    loss: float
    eta_s: float
    at: _timestamp_pb2.Timestamp
    run_id: str
    def __init__(self, lora_id: _Optional[str] = ..., character_id: _Optional[str] = ..., status: _Optional[_Union[_trainer_service_pb2.LoraStatus, str]] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., eta_s: _Optional[float] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_id: _Optional[str] = ...) -> None: ...

class LearningDecision(_message.Message):
    __slots__ = ("decision_id", "character_id", "decision", "reason", "lora_id", "recent_idr", "baseline_idr", "recent_jobs", "baseline_jobs", "at")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    RECENT_IDR_FIELD_NUMBER: _ClassVar[int]
    BASELINE_IDR_FIELD_NUMBER: _ClassVar[int]
    RECENT_JOBS_FIELD_NUMBER: _ClassVar[int]
    BASELINE_JOBS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    character_id: str
    decision: str
    reason: str
    lora_id: str
    recent_idr: float
    baseline_idr: float
    recent_jobs: int
    baseline_jobs: int
    at: _timestamp_pb2.Timestamp
    def __init__(self, decision_id: _Optional[str] = ..., character_id: _Optional[str] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ..., lora_id: _Optional[str] = ..., recent_idr: _Optional[float] = ..., baseline_idr: _Optional[float] = ..., recent_jobs: _Optional[int] = ..., baseline_jobs: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeedbackRecorded(_message.Message):
    __slots__ = ("job_id", "owner_id", "character_id", "rating", "at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    RATING_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    owner_id: str
    character_id: str
    rating: _orchestrator_service_pb2.FeedbackRating
    at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., owner_id: _Optional[str] = ..., character_id: _Optional[str] = ..., rating: _Optional[_Union[_orchestrator_service_pb2.FeedbackRating, str]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportFiled(_message.Message):
    __slots__ = ("report_id", "character_id", "reason", "at")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    character_id: str
    reason: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., character_id: _Optional[str] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ReportResolved(_message.Message):
    __slots__ = ("report_id", "character_id", "action", "admin_id", "at")
    REPORT_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ID_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    report_id: str
    character_id: str
    action: str
    admin_id: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, report_id: _Optional[str] = ..., character_id: _Optional[str] = ..., action: _Optional[str] = ..., admin_id: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
