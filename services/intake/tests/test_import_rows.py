"""A CSV row read as the body of `POST /v1/cases`."""

from icrs_intake.imports.rows import csv_case, csv_field, validate


def test_an_estimated_age_cell_is_a_number() -> None:
    cells = {
        "external_id": "GOV-1",
        "given_name": "Amina",
        "family_name": "Yusuf",
        "beneficiary_category": "ex_combatant",
        "programme_track": "DDR",
        "area": "SO1101",
    }
    row = validate(2, csv_case({**cells, "estimated_age": " 35 "}), csv_field)
    assert row.case is not None
    assert row.case.person.estimated_age == 35
    for bad in ("thirty", "35.0", "\uff13\uff15", "9" * 40):
        refused = validate(2, csv_case({**cells, "estimated_age": bad}), csv_field)
        assert refused.case is None
        assert [r.field for r in refused.rejections] == ["estimated_age"]
