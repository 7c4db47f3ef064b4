"""Request and response models of reports and their review (`routers/reports.py`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.schemas import PLAIN_TEXT, Strict

ReportReason = Literal[
    "sexual_minors",
    "sexual_real_person",
    "non_consensual",
    "impersonation",
    "harassment",
    "violence",
    "copyright",
    "other",
]


class ReportIn(Strict):
    """Name exactly one of character_id and job_id."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["character_id"]}, {"required": ["job_id"]}]}
    )

    character_id: str = Field("", min_length=1, max_length=100, description="The reported character.")
    job_id: str = Field(
        "", min_length=1, max_length=100, description="A reported job (its character is frozen)."
    )
    reason: ReportReason
    details: str = Field(
        "", max_length=4000, pattern=PLAIN_TEXT, description="What is wrong, for the reviewer."
    )

    @model_validator(mode="after")
    def _one_target(self) -> ReportIn:
        if bool(self.character_id) == bool(self.job_id):
            raise ValueError("name exactly one of character_id and job_id")
        return self


class ReportAccepted(BaseModel):
    report_id: str
    status: Literal["open"] = Field(
        description="Always open: the answer is the same whether or not the id names something."
    )


class ReportOut(BaseModel):
    report_id: str
    reporter_id: str
    target_type: Literal["character", "job"]
    target_id: str
    character_id: str | None = Field(
        description="The character frozen by the report; null when the id named none."
    )
    reason: str
    details: str
    status: Literal["open", "resolved"]
    resolution: Literal["unfreeze", "erase"] | None
    note: str
    created_at: str
    resolved_at: str | None
    resolved_by: str | None


class ReportList(BaseModel):
    items: list[ReportOut]


class ReportResolveIn(Strict):
    action: Literal["unfreeze", "erase"] = Field(
        description="unfreeze: the character is fine (it is frozen while other reports stay open); erase: the "
        "character is erased everywhere, and every open report of it is resolved."
    )
    note: str = Field("", max_length=2000, pattern=PLAIN_TEXT, description="Why, for the record.")
