"""The route table and request building of the REST gateway, on the real descriptors."""

from __future__ import annotations

import dataclasses

import pytest

from opensphere.services.errors import ApiError, Code
from opensphere.transport import http_rules

PROJECTS = "/datasphere/v2/projects"


def binding_of(full_name: str, http_method: str) -> http_rules.Binding:
    return next(b for b in http_rules.bindings()
                if b.method.full_name == full_name and b.http_method == http_method)


UPDATE = binding_of("yandex.cloud.datasphere.v2.ProjectService.Update", "PATCH")
# The same request message bound without a body, so query parameters fill every field.
UPDATE_BY_QUERY = dataclasses.replace(UPDATE, body="")


def test_literal_segment_wins_over_variable() -> None:
    binding, values = http_rules.match("GET", f"{PROJECTS}/restrictionsMeta")
    assert binding.method.name == "GetRestrictionsMeta"
    assert values == {}


def test_verb_suffix_and_escaped_variable() -> None:
    binding, values = http_rules.match("POST", f"{PROJECTS}/bt1%3Ax:execute")
    assert binding.method.name == "Execute"
    assert list(values.values()) == ["bt1:x"]
    assert binding.openapi_path == PROJECTS + "/{projectId}:execute"


def test_additional_bindings_are_routes() -> None:
    assert http_rules.match("GET", "/operations/o1:cancel")[0].operation_id == \
        "OperationService_Cancel"
    assert http_rules.match("POST", "/operations/o1:cancel")[0].operation_id == \
        "OperationService_Cancel2"


def test_wrong_method_and_unknown_path() -> None:
    with pytest.raises(http_rules.MethodNotAllowed) as info:
        http_rules.match("DELETE", PROJECTS)
    assert info.value.allowed == ["GET", "POST"]
    with pytest.raises(ApiError) as missing:
        http_rules.match("GET", f"{PROJECTS}/a/b")
    assert missing.value.code == Code.NOT_FOUND


def test_segment_patterns_in_templates() -> None:
    request = UPDATE.method.input_type
    regex, variables, ranks = http_rules._compile("/v1/{project_id=projects/*}/files/**:x",
                                                  request)
    assert regex.fullmatch("/v1/projects/p1/files/a/b:x").group(1) == "projects/p1"
    assert regex.fullmatch("/v1/p1/files/a:x") is None
    assert [http_rules.dotted(v) for v in variables] == ["projectId"]
    assert ranks == [0, 0, 1, 0, 2]


def test_query_parameters_fill_nested_repeated_and_typed_fields() -> None:
    query = [("settings.earlyAccess", "true"), ("settings.commit_mode", "AUTO"),
             ("settings.securityGroupIds", "sg1"), ("settings.securityGroupIds", "sg2"),
             ("limits.maxUnitsPerHour", "5"), ("updateMask", "name,settings.earlyAccess"),
             ("settings.vmInactivityTimeout", "90s"), ("name", "from-query")]
    request = http_rules.build_request(UPDATE_BY_QUERY, {}, query, {"description": "body"})
    assert request.settings.early_access is True
    assert request.settings.commit_mode == request.settings.AUTO
    assert list(request.settings.security_group_ids) == ["sg1", "sg2"]
    assert request.limits.max_units_per_hour.value == 5
    assert list(request.update_mask.paths) == ["name", "settings.early_access"]
    assert request.settings.vm_inactivity_timeout.seconds == 90
    assert (request.name, request.description) == ("from-query", "body")


@pytest.mark.parametrize(("query", "field"), [
    ([("settings.earlyAccess", "yes")], "settings.earlyAccess"),
    ([("name", "a"), ("name", "b")], "name"),
    ([("labels", "x")], "labels"),
    ([("settings", "x")], "settings"),
    ([("settings.nope", "x")], "settings.nope"),
])
def test_bad_query_parameters_name_the_field(query, field) -> None:
    with pytest.raises(ApiError) as info:
        http_rules.build_request(UPDATE_BY_QUERY, {}, query, {})
    assert info.value.code == Code.INVALID_ARGUMENT
    assert info.value.message.startswith(field + ":")


def test_path_variables_win_over_body_and_query() -> None:
    path = {variable: "from-path" for variable in UPDATE_BY_QUERY.variables}
    request = http_rules.build_request(UPDATE_BY_QUERY, path, [("projectId", "from-query")],
                                       {"project_id": "from-body"})
    assert request.project_id == "from-path"


def test_whole_body_methods_ignore_query_parameters() -> None:
    request = http_rules.build_request(UPDATE, {}, [("name", "ignored")], {"name": "kept"})
    assert request.name == "kept"


def test_body_bound_to_one_field() -> None:
    settings_body = dataclasses.replace(UPDATE, body="settings")
    request = http_rules.build_request(settings_body, {}, [("name", "q")], {"ide": "JUPYTER_LAB"})
    assert request.settings.ide == request.settings.JUPYTER_LAB
    assert request.name == "q"
    with pytest.raises(ApiError):
        http_rules.build_request(settings_body, {}, [("settings.ide", "JUPYTER_LAB")], {})


def test_unknown_body_field_is_invalid_argument() -> None:
    with pytest.raises(ApiError) as info:
        http_rules.build_request(UPDATE, {}, [], {"settings": {"colour": "red"}})
    assert info.value.code == Code.INVALID_ARGUMENT
    assert '"colour"' in info.value.message
