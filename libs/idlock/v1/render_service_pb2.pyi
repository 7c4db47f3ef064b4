from idlock.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DriftMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DRIFT_MODE_UNSPECIFIED: _ClassVar[DriftMode]
    DRIFT_MODE_NONE: _ClassVar[DriftMode]
    DRIFT_MODE_OTHER_FACE: _ClassVar[DriftMode]
    DRIFT_MODE_DISTORTED: _ClassVar[DriftMode]
DRIFT_MODE_UNSPECIFIED: DriftMode
DRIFT_MODE_NONE: DriftMode
DRIFT_MODE_OTHER_FACE: DriftMode
DRIFT_MODE_DISTORTED: DriftMode

class RenderProvenance(_message.Message):
    __slots__ = ("provider", "model", "seed", "latency_s", "estimated_cost_usd", "fallback_used", "fallback_reasons", "label", "lora", "lora_scale", "attempts", "paid_calls", "moderation")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_USED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_REASONS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    LORA_SCALE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    PAID_CALLS_FIELD_NUMBER: _ClassVar[int]
    MODERATION_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    seed: int
    latency_s: float
    estimated_cost_usd: float
    fallback_used: bool
    fallback_reasons: _containers.RepeatedScalarFieldContainer[str]
    label: str
    lora: _common_pb2.LoraRef
    lora_scale: float
    attempts: int
    paid_calls: int
    moderation: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., seed: _Optional[int] = ..., latency_s: _Optional[float] = ..., estimated_cost_usd: _Optional[float] = ..., fallback_used: _Optional[bool] = ..., fallback_reasons: _Optional[_Iterable[str]] = ..., label: _Optional[str] = ..., lora: _Optional[_Union[_common_pb2.LoraRef, _Mapping]] = ..., lora_scale: _Optional[float] = ..., attempts: _Optional[int] = ..., paid_calls: _Optional[int] = ..., moderation: _Optional[str] = ...) -> None: ...

class RenderImageRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "references", "pose", "width", "height", "aspect_ratio", "seed", "lora", "lora_scale", "bypass_lora", "providers", "job_id", "character_id", "watermark", "drift", "drift_face", "output_prefix", "state", "cast")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LORA_FIELD_NUMBER: _ClassVar[int]
    LORA_SCALE_FIELD_NUMBER: _ClassVar[int]
    BYPASS_LORA_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FACE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CAST_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    pose: _common_pb2.ImageRef
    width: int
    height: int
    aspect_ratio: str
    seed: int
    lora: _common_pb2.LoraRef
    lora_scale: float
    bypass_lora: bool
    providers: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    character_id: str
    watermark: bool
    drift: DriftMode
    drift_face: _common_pb2.ImageRef
    output_prefix: str
    state: _common_pb2.StateTags
    cast: _containers.RepeatedCompositeFieldContainer[SceneCharacter]
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., pose: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., aspect_ratio: _Optional[str] = ..., seed: _Optional[int] = ..., lora: _Optional[_Union[_common_pb2.LoraRef, _Mapping]] = ..., lora_scale: _Optional[float] = ..., bypass_lora: _Optional[bool] = ..., providers: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ..., character_id: _Optional[str] = ..., watermark: _Optional[bool] = ..., drift: _Optional[_Union[DriftMode, str]] = ..., drift_face: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., output_prefix: _Optional[str] = ..., state: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ..., cast: _Optional[_Iterable[_Union[SceneCharacter, _Mapping]]] = ...) -> None: ...

class SceneCharacter(_message.Message):
    __slots__ = ("character_id", "name", "role", "placement", "references", "state")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    name: str
    role: str
    placement: str
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    state: _common_pb2.StateTags
    def __init__(self, character_id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., placement: _Optional[str] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., state: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ...) -> None: ...

class RenderImageResponse(_message.Message):
    __slots__ = ("image", "provenance")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    provenance: RenderProvenance
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., provenance: _Optional[_Union[RenderProvenance, _Mapping]] = ...) -> None: ...

class EditImageRequest(_message.Message):
    __slots__ = ("image", "mask", "references", "prompt", "negative_prompt", "seed", "providers", "job_id", "output_prefix")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    mask: _common_pb2.ImageRef
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    prompt: str
    negative_prompt: str
    seed: int
    providers: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    output_prefix: str
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., mask: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., seed: _Optional[int] = ..., providers: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ..., output_prefix: _Optional[str] = ...) -> None: ...

class EditImageResponse(_message.Message):
    __slots__ = ("image", "provenance")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageRef
    provenance: RenderProvenance
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., provenance: _Optional[_Union[RenderProvenance, _Mapping]] = ...) -> None: ...

class RenderVideoRequest(_message.Message):
    __slots__ = ("prompt", "negative_prompt", "references", "dialogue", "duration_s", "aspect_ratio", "seed", "providers", "job_id", "character_id", "operation_name", "drift", "drift_face", "output_prefix", "watermark", "state")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_PROMPT_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    ASPECT_RATIO_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATION_NAME_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FACE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    WATERMARK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    negative_prompt: str
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageRef]
    dialogue: str
    duration_s: float
    aspect_ratio: str
    seed: int
    providers: _containers.RepeatedScalarFieldContainer[str]
    job_id: str
    character_id: str
    operation_name: str
    drift: DriftMode
    drift_face: _common_pb2.ImageRef
    output_prefix: str
    watermark: bool
    state: _common_pb2.StateTags
    def __init__(self, prompt: _Optional[str] = ..., negative_prompt: _Optional[str] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageRef, _Mapping]]] = ..., dialogue: _Optional[str] = ..., duration_s: _Optional[float] = ..., aspect_ratio: _Optional[str] = ..., seed: _Optional[int] = ..., providers: _Optional[_Iterable[str]] = ..., job_id: _Optional[str] = ..., character_id: _Optional[str] = ..., operation_name: _Optional[str] = ..., drift: _Optional[_Union[DriftMode, str]] = ..., drift_face: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ..., output_prefix: _Optional[str] = ..., watermark: _Optional[bool] = ..., state: _Optional[_Union[_common_pb2.StateTags, _Mapping]] = ...) -> None: ...

class RenderVideoResponse(_message.Message):
    __slots__ = ("video", "provenance", "operation_name", "polls")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    OPERATION_NAME_FIELD_NUMBER: _ClassVar[int]
    POLLS_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.VideoRef
    provenance: RenderProvenance
    operation_name: str
    polls: int
    def __init__(self, video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., provenance: _Optional[_Union[RenderProvenance, _Mapping]] = ..., operation_name: _Optional[str] = ..., polls: _Optional[int] = ...) -> None: ...

class ListProvidersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProviderInfo(_message.Message):
    __slots__ = ("name", "available", "reason", "media", "model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MEDIA_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    media: _containers.RepeatedScalarFieldContainer[_common_pb2.MediaKind]
    model: str
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., media: _Optional[_Iterable[_Union[_common_pb2.MediaKind, str]]] = ..., model: _Optional[str] = ...) -> None: ...

class ListProvidersResponse(_message.Message):
    __slots__ = ("providers",)
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    providers: _containers.RepeatedCompositeFieldContainer[ProviderInfo]
    def __init__(self, providers: _Optional[_Iterable[_Union[ProviderInfo, _Mapping]]] = ...) -> None: ...
