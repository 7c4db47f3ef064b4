from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_REFINE: _ClassVar[Verdict]
    VERDICT_BORDERLINE: _ClassVar[Verdict]
    VERDICT_PASS: _ClassVar[Verdict]
    VERDICT_GOLDEN: _ClassVar[Verdict]

class JobStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATUS_UNSPECIFIED: _ClassVar[JobStatus]
    JOB_STATUS_QUEUED: _ClassVar[JobStatus]
    JOB_STATUS_RUNNING: _ClassVar[JobStatus]
    JOB_STATUS_SUCCEEDED: _ClassVar[JobStatus]
    JOB_STATUS_FAILED: _ClassVar[JobStatus]
    JOB_STATUS_NEEDS_MORE_REFS: _ClassVar[JobStatus]
    JOB_STATUS_CANCELLED: _ClassVar[JobStatus]

class MediaKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEDIA_KIND_UNSPECIFIED: _ClassVar[MediaKind]
    MEDIA_KIND_IMAGE: _ClassVar[MediaKind]
    MEDIA_KIND_VIDEO: _ClassVar[MediaKind]
VERDICT_UNSPECIFIED: Verdict
VERDICT_REFINE: Verdict
VERDICT_BORDERLINE: Verdict
VERDICT_PASS: Verdict
VERDICT_GOLDEN: Verdict
JOB_STATUS_UNSPECIFIED: JobStatus
JOB_STATUS_QUEUED: JobStatus
JOB_STATUS_RUNNING: JobStatus
JOB_STATUS_SUCCEEDED: JobStatus
JOB_STATUS_FAILED: JobStatus
JOB_STATUS_NEEDS_MORE_REFS: JobStatus
JOB_STATUS_CANCELLED: JobStatus
MEDIA_KIND_UNSPECIFIED: MediaKind
MEDIA_KIND_IMAGE: MediaKind
MEDIA_KIND_VIDEO: MediaKind

class ImageRef(_message.Message):
    __slots__ = ("uri", "sha256", "mime", "width", "height")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    mime: str
    width: int
    height: int
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., mime: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class VideoRef(_message.Message):
    __slots__ = ("uri", "sha256", "mime", "width", "height", "duration_s", "fps")
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MIME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    uri: str
    sha256: str
    mime: str
    width: int
    height: int
    duration_s: float
    fps: float
    def __init__(self, uri: _Optional[str] = ..., sha256: _Optional[str] = ..., mime: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., duration_s: _Optional[float] = ..., fps: _Optional[float] = ...) -> None: ...

class ImageInput(_message.Message):
    __slots__ = ("ref", "data")
    REF_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ref: ImageRef
    data: bytes
    def __init__(self, ref: _Optional[_Union[ImageRef, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BoundingBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class IdentityVector(_message.Message):
    __slots__ = ("encoder", "values")
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    encoder: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, encoder: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class IdrScore(_message.Message):
    __slots__ = ("raw", "calibrated", "verdict", "encoder")
    RAW_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    raw: float
    calibrated: float
    verdict: Verdict
    encoder: str
    def __init__(self, raw: _Optional[float] = ..., calibrated: _Optional[float] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., encoder: _Optional[str] = ...) -> None: ...

class CopyCheck(_message.Message):
    __slots__ = ("checked", "similarity", "near_copy", "reference_index", "threshold")
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    NEAR_COPY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_INDEX_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    checked: bool
    similarity: float
    near_copy: bool
    reference_index: int
    threshold: float
    def __init__(self, checked: _Optional[bool] = ..., similarity: _Optional[float] = ..., near_copy: _Optional[bool] = ..., reference_index: _Optional[int] = ..., threshold: _Optional[float] = ...) -> None: ...

class StateTags(_message.Message):
    __slots__ = ("clothing", "injuries", "props", "setting", "mood")
    CLOTHING_FIELD_NUMBER: _ClassVar[int]
    INJURIES_FIELD_NUMBER: _ClassVar[int]
    PROPS_FIELD_NUMBER: _ClassVar[int]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    MOOD_FIELD_NUMBER: _ClassVar[int]
    clothing: _containers.RepeatedScalarFieldContainer[str]
    injuries: _containers.RepeatedScalarFieldContainer[str]
    props: _containers.RepeatedScalarFieldContainer[str]
    setting: _containers.RepeatedScalarFieldContainer[str]
    mood: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, clothing: _Optional[_Iterable[str]] = ..., injuries: _Optional[_Iterable[str]] = ..., props: _Optional[_Iterable[str]] = ..., setting: _Optional[_Iterable[str]] = ..., mood: _Optional[_Iterable[str]] = ...) -> None: ...

class FrameIdr(_message.Message):
    __slots__ = ("timestamp_s", "score", "face_found")
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    timestamp_s: float
    score: IdrScore
    face_found: bool
    def __init__(self, timestamp_s: _Optional[float] = ..., score: _Optional[_Union[IdrScore, _Mapping]] = ..., face_found: _Optional[bool] = ...) -> None: ...

class LoraRef(_message.Message):
    __slots__ = ("lora_id", "uri", "sha256")
    LORA_ID_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    lora_id: str
    uri: str
    sha256: str
    def __init__(self, lora_id: _Optional[str] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class PageRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class CastMember(_message.Message):
    __slots__ = ("character_id", "role", "name")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    role: str
    name: str
    def __init__(self, character_id: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class CastResult(_message.Message):
    __slots__ = ("character_id", "name", "role", "face_found", "face_index", "box", "idr_before", "idr_after", "refined", "note", "tags", "removed", "episode_id", "scene_index", "copy", "face_embedding")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    IDR_BEFORE_FIELD_NUMBER: _ClassVar[int]
    IDR_AFTER_FIELD_NUMBER: _ClassVar[int]
    REFINED_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    EPISODE_ID_FIELD_NUMBER: _ClassVar[int]
    SCENE_INDEX_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    FACE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    name: str
    role: str
    face_found: bool
    face_index: int
    box: BoundingBox
    idr_before: IdrScore
    idr_after: IdrScore
    refined: bool
    note: str
    tags: StateTags
    removed: StateTags
    episode_id: str
    scene_index: int
    copy: CopyCheck
    face_embedding: IdentityVector
    def __init__(self, character_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., face_found: _Optional[bool] = ..., face_index: _Optional[int] = ..., box: _Optional[_Union[BoundingBox, _Mapping]] = ..., idr_before: _Optional[_Union[IdrScore, _Mapping]] = ..., idr_after: _Optional[_Union[IdrScore, _Mapping]] = ..., refined: _Optional[bool] = ..., note: _Optional[str] = ..., tags: _Optional[_Union[StateTags, _Mapping]] = ..., removed: _Optional[_Union[StateTags, _Mapping]] = ..., episode_id: _Optional[str] = ..., scene_index: _Optional[int] = ..., copy: _Optional[_Union[CopyCheck, _Mapping]] = ..., face_embedding: _Optional[_Union[IdentityVector, _Mapping]] = ...) -> None: ...
