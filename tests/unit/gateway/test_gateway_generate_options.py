"""Generation options: flags and the duration take strict types; an integral JSON float still fills the seed."""

import pytest
from pydantic import ValidationError

from gateway.schemas import GenerateOptionsIn


@pytest.mark.parametrize("body", ['{"video_duration_s": false}', '{"video": 1}', '{"watermark": "yes"}'])
def test_a_wrong_type_is_refused(body: str) -> None:
    with pytest.raises(ValidationError):
        GenerateOptionsIn.model_validate_json(body)


def test_json_numbers_as_json_schema_reads_them() -> None:
    o = GenerateOptionsIn.model_validate_json('{"video_duration_s": 5, "seed": 575322116389674.0}')
    assert o.video_duration_s == 5.0 and o.seed == 575322116389674
