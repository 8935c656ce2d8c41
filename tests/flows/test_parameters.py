"""The flows' parameters draw a proper form in the Prefect UI (SPEC §7)."""

from __future__ import annotations

from flows.backfill import backfill
from flows.daily import daily
from flows.retention import retention


def schema(flow) -> dict:
    return flow.parameters.model_dump()


def test_dates_are_dates_and_datasets_a_list_of_known_names() -> None:
    daily_schema = schema(daily)
    run_date = daily_schema["properties"]["run_date"]
    assert {"format": "date", "type": "string"} in run_date["anyOf"]
    assert daily_schema["properties"]["datasets"]["items"] == {"$ref": "#/definitions/Dataset"}
    assert daily_schema["definitions"]["Dataset"]["enum"] == [
        "orders",
        "customers",
        "payments",
        "employees",
    ]
    backfill_schema = schema(backfill)
    assert backfill_schema["required"] == ["start_date", "end_date"]
    assert backfill_schema["properties"]["max_parallel"]["minimum"] == 1


def test_every_parameter_is_described() -> None:
    for flow in (daily, backfill, retention):
        for name, prop in schema(flow)["properties"].items():
            assert prop.get("description"), f"{flow.name}.{name} has no description"
