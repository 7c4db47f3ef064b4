from idlock.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FrameSelection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FRAME_SELECTION_UNSPECIFIED: _ClassVar[FrameSelection]
    FRAME_SELECTION_FIRST: _ClassVar[FrameSelection]
    FRAME_SELECTION_LAST: _ClassVar[FrameSelection]
    FRAME_SELECTION_EVERY_N_SECONDS: _ClassVar[FrameSelection]
FRAME_SELECTION_UNSPECIFIED: FrameSelection
FRAME_SELECTION_FIRST: FrameSelection
FRAME_SELECTION_LAST: FrameSelection
FRAME_SELECTION_EVERY_N_SECONDS: FrameSelection

class HeadPose(_message.Message):
    __slots__ = ("yaw", "pitch", "roll")
    YAW_FIELD_NUMBER: _ClassVar[int]
    PITCH_FIELD_NUMBER: _ClassVar[int]
    ROLL_FIELD_NUMBER: _ClassVar[int]
    yaw: float
    pitch: float
    roll: float
    def __init__(self, yaw: _Optional[float] = ..., pitch: _Optional[float] = ..., roll: _Optional[float] = ...) -> None: ...

class DetectedFace(_message.Message):
    __slots__ = ("box", "landmarks", "score", "face_size_px", "blur", "pose")
    BOX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    POSE_FIELD_NUMBER: _ClassVar[int]
    box: _common_pb2.BoundingBox
    landmarks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point]
    score: float
    face_size_px: float
    blur: float
    pose: HeadPose
    def __init__(self, box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., landmarks: _Optional[_Iterable[_Union[_common_pb2.Point, _Mapping]]] = ..., score: _Optional[float] = ..., face_size_px: _Optional[float] = ..., blur: _Optional[float] = ..., pose: _Optional[_Union[HeadPose, _Mapping]] = ...) -> None: ...

class DetectFacesRequest(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: _common_pb2.ImageInput
    def __init__(self, image: _Optional[_Union[_common_pb2.ImageInput, _Mapping]] = ...) -> None: ...

class DetectFacesResponse(_message.Message):
    __slots__ = ("faces", "image_width", "image_height")
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[DetectedFace]
    image_width: int
    image_height: int
    def __init__(self, faces: _Optional[_Iterable[_Union[DetectedFace, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ...) -> None: ...

class EncodeReferencesRequest(_message.Message):
    __slots__ = ("images", "encoder")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    ENCODER_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageInput]
    encoder: str
    def __init__(self, images: _Optional[_Iterable[_Union[_common_pb2.ImageInput, _Mapping]]] = ..., encoder: _Optional[str] = ...) -> None: ...

class ReferenceQuality(_message.Message):
    __slots__ = ("index", "faces_found", "multiple_faces", "face_size_px", "blur", "too_small", "too_blurry", "inconsistent", "similarity_to_others", "accepted", "issues", "face")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    FACES_FOUND_FIELD_NUMBER: _ClassVar[int]
    MULTIPLE_FACES_FIELD_NUMBER: _ClassVar[int]
    FACE_SIZE_PX_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    TOO_SMALL_FIELD_NUMBER: _ClassVar[int]
    TOO_BLURRY_FIELD_NUMBER: _ClassVar[int]
    INCONSISTENT_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_TO_OTHERS_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ISSUES_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    index: int
    faces_found: int
    multiple_faces: bool
    face_size_px: float
    blur: float
    too_small: bool
    too_blurry: bool
    inconsistent: bool
    similarity_to_others: float
    accepted: bool
    issues: _containers.RepeatedScalarFieldContainer[str]
    face: DetectedFace
    def __init__(self, index: _Optional[int] = ..., faces_found: _Optional[int] = ..., multiple_faces: _Optional[bool] = ..., face_size_px: _Optional[float] = ..., blur: _Optional[float] = ..., too_small: _Optional[bool] = ..., too_blurry: _Optional[bool] = ..., inconsistent: _Optional[bool] = ..., similarity_to_others: _Optional[float] = ..., accepted: _Optional[bool] = ..., issues: _Optional[_Iterable[str]] = ..., face: _Optional[_Union[DetectedFace, _Mapping]] = ...) -> None: ...

class EncodeReferencesResponse(_message.Message):
    __slots__ = ("identity", "views", "quality", "inconsistent_indices", "consistent")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    VIEWS_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    INCONSISTENT_INDICES_FIELD_NUMBER: _ClassVar[int]
    CONSISTENT_FIELD_NUMBER: _ClassVar[int]
    identity: _common_pb2.IdentityVector
    views: _containers.RepeatedCompositeFieldContainer[_common_pb2.IdentityVector]
    quality: _containers.RepeatedCompositeFieldContainer[ReferenceQuality]
    inconsistent_indices: _containers.RepeatedScalarFieldContainer[int]
    consistent: bool
    def __init__(self, identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., views: _Optional[_Iterable[_Union[_common_pb2.IdentityVector, _Mapping]]] = ..., quality: _Optional[_Iterable[_Union[ReferenceQuality, _Mapping]]] = ..., inconsistent_indices: _Optional[_Iterable[int]] = ..., consistent: _Optional[bool] = ...) -> None: ...

class CharacterIdentity(_message.Message):
    __slots__ = ("character_id", "identity", "references", "placement")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    identity: _common_pb2.IdentityVector
    references: _containers.RepeatedCompositeFieldContainer[_common_pb2.ImageInput]
    placement: str
    def __init__(self, character_id: _Optional[str] = ..., identity: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., references: _Optional[_Iterable[_Union[_common_pb2.ImageInput, _Mapping]]] = ..., placement: _Optional[str] = ...) -> None: ...

class CharacterMatch(_message.Message):
    __slots__ = ("character_id", "face_found", "score", "box", "face_index", "landmarks", "face_embedding", "copy")
    CHARACTER_ID_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    FACE_EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    character_id: str
    face_found: bool
    score: _common_pb2.IdrScore
    box: _common_pb2.BoundingBox
    face_index: int
    landmarks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Point]
    face_embedding: _common_pb2.IdentityVector
    copy: _common_pb2.CopyCheck
    def __init__(self, character_id: _Optional[str] = ..., face_found: _Optional[bool] = ..., score: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., box: _Optional[_Union[_common_pb2.BoundingBox, _Mapping]] = ..., face_index: _Optional[int] = ..., landmarks: _Optional[_Iterable[_Union[_common_pb2.Point, _Mapping]]] = ..., face_embedding: _Optional[_Union[_common_pb2.IdentityVector, _Mapping]] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ...) -> None: ...

class ScoreIdentityRequest(_message.Message):
    __slots__ = ("characters", "image")
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    characters: _containers.RepeatedCompositeFieldContainer[CharacterIdentity]
    image: _common_pb2.ImageInput
    def __init__(self, characters: _Optional[_Iterable[_Union[CharacterIdentity, _Mapping]]] = ..., image: _Optional[_Union[_common_pb2.ImageInput, _Mapping]] = ...) -> None: ...

class ScoreIdentityResponse(_message.Message):
    __slots__ = ("matches", "faces_detected", "no_face", "extra_faces", "bleeds", "placement_swapped")
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    NO_FACE_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FACES_FIELD_NUMBER: _ClassVar[int]
    BLEEDS_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_SWAPPED_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[CharacterMatch]
    faces_detected: int
    no_face: bool
    extra_faces: _containers.RepeatedScalarFieldContainer[int]
    bleeds: _containers.RepeatedCompositeFieldContainer[IdentityBleed]
    placement_swapped: bool
    def __init__(self, matches: _Optional[_Iterable[_Union[CharacterMatch, _Mapping]]] = ..., faces_detected: _Optional[int] = ..., no_face: _Optional[bool] = ..., extra_faces: _Optional[_Iterable[int]] = ..., bleeds: _Optional[_Iterable[_Union[IdentityBleed, _Mapping]]] = ..., placement_swapped: _Optional[bool] = ...) -> None: ...

class IdentityBleed(_message.Message):
    __slots__ = ("character_ids", "face_index")
    CHARACTER_IDS_FIELD_NUMBER: _ClassVar[int]
    FACE_INDEX_FIELD_NUMBER: _ClassVar[int]
    character_ids: _containers.RepeatedScalarFieldContainer[str]
    face_index: int
    def __init__(self, character_ids: _Optional[_Iterable[str]] = ..., face_index: _Optional[int] = ...) -> None: ...

class CompareImagesRequest(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: _common_pb2.ImageInput
    b: _common_pb2.ImageInput
    def __init__(self, a: _Optional[_Union[_common_pb2.ImageInput, _Mapping]] = ..., b: _Optional[_Union[_common_pb2.ImageInput, _Mapping]] = ...) -> None: ...

class CompareImagesResponse(_message.Message):
    __slots__ = ("score", "face_found_a", "face_found_b", "copy")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_A_FIELD_NUMBER: _ClassVar[int]
    FACE_FOUND_B_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    score: _common_pb2.IdrScore
    face_found_a: bool
    face_found_b: bool
    copy: _common_pb2.CopyCheck
    def __init__(self, score: _Optional[_Union[_common_pb2.IdrScore, _Mapping]] = ..., face_found_a: _Optional[bool] = ..., face_found_b: _Optional[bool] = ..., copy: _Optional[_Union[_common_pb2.CopyCheck, _Mapping]] = ...) -> None: ...

class ExtractFramesRequest(_message.Message):
    __slots__ = ("video", "selection", "every_s", "output_prefix")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    SELECTION_FIELD_NUMBER: _ClassVar[int]
    EVERY_S_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    video: _common_pb2.VideoRef
    selection: FrameSelection
    every_s: float
    output_prefix: str
    def __init__(self, video: _Optional[_Union[_common_pb2.VideoRef, _Mapping]] = ..., selection: _Optional[_Union[FrameSelection, str]] = ..., every_s: _Optional[float] = ..., output_prefix: _Optional[str] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("timestamp_s", "index", "image")
    TIMESTAMP_S_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    timestamp_s: float
    index: int
    image: _common_pb2.ImageRef
    def __init__(self, timestamp_s: _Optional[float] = ..., index: _Optional[int] = ..., image: _Optional[_Union[_common_pb2.ImageRef, _Mapping]] = ...) -> None: ...

class ExtractFramesResponse(_message.Message):
    __slots__ = ("frames", "duration_s", "fps")
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    frames: _containers.RepeatedCompositeFieldContainer[VideoFrame]
    duration_s: float
    fps: float
    def __init__(self, frames: _Optional[_Iterable[_Union[VideoFrame, _Mapping]]] = ..., duration_s: _Optional[float] = ..., fps: _Optional[float] = ...) -> None: ...
