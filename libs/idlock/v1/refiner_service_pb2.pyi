from idlock.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RefineStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REFINE_STRATEGY_UNSPECIFIED: _ClassVar[RefineStrategy]
    REFINE_STRATEGY_AUTO: _ClassVar[RefineStrategy]
    REFINE_STRATEGY_RENDER: _ClassVar[RefineStrategy]
    REFINE_STRATEGY_REFERENCE_WARP: _ClassVar[RefineStrategy]
REFINE_STRATEGY_UNSPECIFIED: RefineStrategy
REFINE_STRATEGY_AUTO: RefineStrategy
REFINE_STRATEGY_RENDER: RefineStrategy
REFINE_STRATEGY_REFERENCE_WARP: RefineStrategy

class RefineRequest(_message.Message):
    __slots__ = ("image", "character_id", "identity", "references", "threshold", "max_attempts", "strategy", "job_id", "prompt", "target_box")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    TARGET_BOX_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    character_id: str
    identity: _common_pb2.IdentityVector
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    threshold: float
    max_attempts: int
    strategy: RefineStrategy
    job_id: str
    prompt: str
    target_box: _common_pb2.BoundingBox
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., character_id: _Optional[str] = ..., identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., threshold: _Optional[float] = ..., max_attempts: _Optional[int] = ..., strategy: _Optional[_Union[RefineStrategy, str]] = ..., job_id: _Optional[str] = ..., prompt: _Optional[str] = ..., target_box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ...) -> None: ...

class RefineAttempt(_message.Message):
    __slots__ = ("index", "strategy", "score", "seconds", "seam", "image", "eligible", "rejected_reason", "copy")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEAM_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    ELIGIBLE_FIELD_NUMBER: _ClassVar[int]
    REJECTED_REASON_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    index: int
    strategy: RefineStrategy
    score: _common_pb2.IdrScore
    seconds: float
    seam: float
    image: _common_pb2.ImageRef
    eligible: bool
    rejected_reason: str
    copy: _common_pb2.CopyCheck
    def __init__(self, index: _Optional[int] = ..., strategy: _Optional[_Union[RefineStrategy, str]] = ..., score: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., seconds: _Optional[float] = ..., seam: _Optional[float] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., eligible: _Optional[bool] = ..., rejected_reason: _Optional[str] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ...) -> None: ...

class RefineResponse(_message.Message):
    __slots__ = ("attempts", "best", "before", "after", "improved", "face_found", "copy")
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    BEST_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    IMPROVED_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    attempts: _containers.RepeatedCompositeFieldContainer[RefineAttempt]
    best: _common_pb2.ImageRef
    before: _common_pb2.IdrScore
    after: _common_pb2.IdrScore
    improved: bool
    face_found: bool
    copy: _common_pb2.CopyCheck
    def __init__(self, attempts: _Optional[_Iterable[_Union[RefineAttempt, _Mapping]]] = ..., best: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., before: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., after: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., improved: _Optional[bool] = ..., face_found: _Optional[bool] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ...) -> None: ...
