"""Generation options: flags and the duration take strict types; an integral JSON float still fills the seed."""

import pytest
from pydantic import ValidationError

from gateway.schemas import GenerateOptionsIn


@pytest.mark.parametrize("body", ['{"video_duration_s": false}', '{"video": 1}', '{"watermark": "yes"}'])
def test_a_wrong_type_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        GenerateOptionsIn.model_validate_json(body)


def test_json_numbers_as_json_schema_reads_them() -> None:
    o = GenerateOptionsIn.model_validate_json(
        '{"video": true, "video_duration_s": 5, "seed": 575322116389674.0}'
    )
    assert o.video_duration_s == 5.0 and o.seed == 575322116389674


def test_video_only_fields_need_a_video_and_the_schema_says_so() -> None:
    with pytest.raises(ValidationError, match="apply to videos only"):
        GenerateOptionsIn.model_validate_json('{"video": false, "video_duration_s": 59.0}')
    with pytest.raises(ValidationError, match="apply to videos only"):
        GenerateOptionsIn.model_validate_json('{"dialogue": "hello"}')
    schema = GenerateOptionsIn.model_json_schema()
    assert schema["if"] == {"properties": {"video": {"const": True}}, "required": ["video"]}
    assert schema["else"]["properties"]["video_duration_s"] == {"maximum": 0}
