"""Fleet template placeholders: the Go text/template subset rendered per device (pure Python)."""

import time

import pytest

from flightctl import templating
from flightctl.templating import Template, TemplateError, has_placeholders, parse, render, validate

LABELS = {"site": "New York", "os-tag": "v2", "region": "eu", "empty": "", "Tier": "Gold"}


def r(text: str, labels: dict[str, str] | None = None, name: str = "dev-1",
      missing_ok: bool = False) -> str:
    return render(text, name, LABELS if labels is None else labels, missing_ok=missing_ok)


def error_of(text: str, labels: dict[str, str] | None = None, missing_ok: bool = False) -> str:
    with pytest.raises(TemplateError) as exc:
        r(text, labels, missing_ok=missing_ok)
    return str(exc.value)


# --- plain text, data model, printing ----------------------------------------------------------


def test_a_string_without_placeholders_is_returned_unchanged_without_parsing():
    text = "quay.io/org/os:stable {not a placeholder}"
    assert not has_placeholders(text)
    assert render(text, "dev-1", {}) is text
    validate(text)


def test_has_placeholders_only_looks_for_an_opening_delimiter():
    assert has_placeholders("a {{ b")
    assert not has_placeholders("a { { b }}")


def test_the_device_name_and_a_label_are_substituted_into_surrounding_text():
    assert r("img:{{ .metadata.labels.region }}-{{.metadata.name}}") == "img:eu-dev-1"


def test_upstream_documentation_examples_render_as_documented():
    tpl = 'quay.io/org/os:{{ getOrDefault .metadata.labels "os-tag" "stable" }}'
    assert r(tpl) == "quay.io/org/os:v2"
    assert r(tpl, {}) == "quay.io/org/os:stable"
    assert r('{{ .metadata.labels.site | upper | replace " " "-" }}') == "NEW-YORK"
    assert r('{{ index .metadata.labels "os-tag" }}') == "v2"


def test_maps_print_like_go_with_sorted_keys():
    assert r("{{ .metadata.labels }}", {"b": "2", "a": "1"}) == "map[a:1 b:2]"
    assert r("{{ . }}", {"k": "v"}, name="n") == "map[metadata:map[labels:map[k:v] name:n]]"
    assert r("{{ $.metadata }}", {}, name="n") == "map[labels:map[] name:n]"


def test_literals_print_as_go_prints_them():
    assert r("{{ true }} {{ false }} {{ 42 }} {{ -7 }} {{ +3 }}") == "true false 42 -7 3"
    assert r("{{ 0x1F }} {{ 0o17 }} {{ 017 }} {{ 0b101 }} {{ 1_000 }}") == "31 15 15 5 1000"
    assert r('{{ "tab\\there" }}|{{ "\\x41\\101\\u00e9\\U0001F600\\"" }}') == 'tab\there|AAé😀"'
    assert r('{{ "\\xc3\\xa9" }}') == "é"  # \x escapes are bytes, as in Go
    assert r("{{ `raw \\n {{ }} stays` }}") == "raw \\n {{ }} stays"
    assert r("{{ `a\r\nb` }}") == "a\nb"  # Go drops carriage returns from raw strings


def test_a_string_literal_may_contain_the_closing_delimiter():
    assert r('{{ "}}" }}{{ "a|b(c)" }}') == "}}a|b(c)"


def test_actions_may_span_lines_and_errors_report_line_and_column():
    assert r("{{\n  upper\n  .metadata.name\n}}") == "DEV-1"
    message = error_of("line one\n  {{ nope }}")
    assert message.startswith("template error at line 2, column 6:")
    assert "\n" not in message


# --- trim markers and comments -----------------------------------------------------------------


def test_trim_markers_remove_adjacent_whitespace_including_newlines():
    assert r("a  \n\t{{- .metadata.labels.region -}}\n  b") == "aeub"
    assert r("a  {{- .metadata.labels.region }}  b") == "aeu  b"
    assert r("a  {{ .metadata.labels.region -}}  b") == "a  eub"


def test_a_dash_without_a_following_space_is_a_negative_number_not_a_trim_marker():
    assert r("x {{-3}} y") == "x -3 y"
    assert r("x {{ 3 }} {{- 4}}") == "x 34"


def test_comments_produce_nothing_and_may_trim():
    assert r("a {{/* a comment with }} inside */}} b") == "a  b"
    assert r("a \n {{- /* multi\nline */ -}} \n b") == "ab"
    assert parse("only {{/* c */}} text").render("x", {}) == "only  text"


def test_malformed_comments_are_rejected():
    assert "unclosed comment" in error_of("{{/* never closed }}")
    assert "comment ends before closing delimiter" in error_of("{{/* c */ .metadata.name }}")


# --- control structures ------------------------------------------------------------------------


@pytest.mark.parametrize(("region", "expected"), [("eu", "E"), ("us", "U"), ("ap", "other")])
def test_if_else_if_else_chooses_the_first_true_branch(region, expected):
    tpl = ('{{ if eq .metadata.labels.region "eu" }}E{{ else if eq .metadata.labels.region "us" }}'
           "U{{ else }}other{{ end }}")
    assert r(tpl, {"region": region}) == expected


def test_if_without_else_renders_nothing_when_false():
    assert r("[{{ if .metadata.labels.empty }}x{{ end }}]") == "[]"


@pytest.mark.parametrize(
    ("condition", "truthy"),
    [('""', False), ('"x"', True), ("0", False), ("1", True), ("false", False), ("true", True),
     (".metadata.labels", True), ("$.metadata.labels", True), ("not .metadata.labels", False)],
)
def test_truthiness_follows_go(condition, truthy):
    assert r(f"{{{{ if {condition} }}}}T{{{{ else }}}}F{{{{ end }}}}") == ("T" if truthy else "F")


def test_an_empty_label_map_is_false():
    assert r("{{ if .metadata.labels }}T{{ else }}F{{ end }}", {}) == "F"


def test_with_rebinds_dot_and_dollar_still_reaches_the_root():
    tpl = "{{ with .metadata.labels }}{{ .region }}/{{ $.metadata.name }}/{{ len . }}{{ end }}"
    assert r(tpl, {"region": "eu"}) == "eu/dev-1/1"
    assert r('{{ with index .metadata.labels "os-tag" }}tag={{ . }}{{ end }}') == "tag=v2"


def test_with_else_runs_the_else_branch_with_the_outer_dot():
    tpl = '{{ with index .metadata.labels "absent" }}{{ . }}{{ else }}{{ .metadata.name }}{{ end }}'
    assert r(tpl) == "dev-1"


def test_else_with_chains_like_else_if():
    tpl = ('{{ with index .metadata.labels "a" }}a={{ . }}'
           '{{ else with index .metadata.labels "b" }}b={{ . }}{{ else }}none{{ end }}')
    assert r(tpl, {"a": "1", "b": "2"}) == "a=1"
    assert r(tpl, {"b": "2"}) == "b=2"
    assert r(tpl, {}) == "none"


def test_nested_blocks_up_to_ten_levels_are_accepted_and_eleven_are_rejected():
    ten = "{{ if true }}" * 10 + "deep" + "{{ end }}" * 10
    assert r(ten) == "deep"
    eleven = "{{ if true }}" * 11 + "deep" + "{{ end }}" * 11
    assert "nesting depth exceeds the maximum of 10" in error_of(eleven)


def test_a_long_else_if_chain_does_not_count_as_nesting():
    tpl = "{{ if false }}0" + "".join(f"{{{{ else if eq {i} 12 }}}}{i}" for i in range(1, 15))
    assert r(tpl + "{{ end }}") == "12"


def test_a_very_long_else_if_chain_is_parsed_and_rendered_without_recursion():
    tpl = "{{ if false }}" + "".join(f"{{{{ else if eq {i} 2999 }}}}{i}" for i in range(3000))
    assert r(tpl + "{{ end }}") == "2999"


def test_a_pathologically_long_pipeline_fails_cleanly():
    with pytest.raises(TemplateError, match="too complex"):
        validate("{{ .metadata.name" + " | upper" * 5000 + " }}")


def test_deeply_nested_parentheses_are_rejected():
    assert r("{{ " + "(" * 10 + "1" + ")" * 10 + " }}") == "1"
    assert "nesting depth" in error_of("{{ " + "(" * 11 + "1" + ")" * 11 + " }}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ if true }}x", "unclosed {{if}}: missing {{end}}"),
        ("{{ with . }}x{{ else }}y", "unclosed {{with}}"),
        ("x{{ end }}", "unexpected {{end}}"),
        ("x{{ else }}", "unexpected {{else}}"),
        ("{{ if true }}a{{ else }}b{{ else }}c{{ end }}", "expected {{end}}; found {{else}}"),
        ("{{ with . }}a{{ else if true }}b{{ end }}", 'unexpected "if" in {{else}}'),
        ("{{ if true }}a{{ end x }}", 'unexpected "x" in {{end}}'),
        ("{{ if }}a{{ end }}", "missing value for if"),
    ],
)
def test_malformed_control_structures_are_rejected(text, message):
    assert message in error_of(text)


# --- pipelines and parentheses -----------------------------------------------------------------


def test_a_pipeline_passes_each_value_as_the_last_argument_of_the_next_command():
    assert r('{{ "a-b-c" | replace "-" "." | upper }}') == "A.B.C"
    assert r('{{ "x" | printf "%s-%s" "y" }}') == "y-x"


def test_parentheses_group_sub_pipelines_and_allow_field_access_on_the_result():
    assert r('{{ printf "%s/%s" (upper .metadata.name) (.metadata.labels.region | upper) }}') == (
        "DEV-1/EU")
    assert r("{{ (.metadata.labels).region }}{{ ($.metadata).name }}") == "eudev-1"


# --- functions ---------------------------------------------------------------------------------


def test_upper_and_lower_change_case_rune_by_rune_like_go():
    assert r("{{ upper .metadata.labels.Tier }} {{ lower .metadata.labels.Tier }}") == "GOLD gold"
    assert r('{{ upper "straße é" }}') == "STRAßE É"  # Go does not expand ß


def test_replace_replaces_every_occurrence():
    assert r('{{ replace "o" "0" "foo boo" }}') == "f00 b00"
    assert r('{{ replace "" "-" "ab" }}') == "-a-b-"


def test_get_or_default_returns_a_present_value_even_when_empty_and_the_default_otherwise():
    tpl = '{{ getOrDefault .metadata.labels "KEY" "dflt" }}'
    assert r(tpl.replace("KEY", "region")) == "eu"
    assert r(tpl.replace("KEY", "empty")) == ""
    assert r(tpl.replace("KEY", "absent")) == "dflt"
    assert "expected map[string]string; got string" in error_of(
        '{{ getOrDefault .metadata.name "a" "b" }}')
    assert "expected string; got int" in error_of('{{ getOrDefault .metadata.labels "a" 1 }}')


def test_index_looks_up_maps_and_bytes_and_never_fails_on_a_missing_key():
    assert r('{{ index .metadata.labels "os-tag" }}') == "v2"
    assert r('[{{ index .metadata.labels "absent" }}]') == "[]"
    assert r('{{ index $ "metadata" "name" }}') == "dev-1"
    assert r('{{ index "abc" 1 }}') == "98"
    assert r("{{ index .metadata.labels }}", {"a": "b"}) == "map[a:b]"
    assert "index out of range: 3" in error_of('{{ index "abc" 3 }}')
    assert "can't index item of type int" in error_of("{{ index 5 1 }}")
    assert "should be string" in error_of("{{ index .metadata.labels 1 }}")


def test_len_counts_bytes_of_strings_and_entries_of_maps():
    assert r("{{ len .metadata.name }} {{ len .metadata.labels }}", {"a": "b"}) == "5 1"
    assert r('{{ len "é" }}') == "2"
    assert "len of type int" in error_of("{{ len 3 }}")


def test_eq_compares_the_first_argument_with_each_of_the_others():
    assert r('{{ eq .metadata.labels.region "us" "eu" }}') == "true"
    assert r('{{ eq .metadata.labels.region "us" "ap" }}') == "false"
    assert r("{{ eq 1 1 }} {{ eq true false }}") == "true false"
    assert r('{{ ne "a" "b" }} {{ ne 2 2 }}') == "true false"
    assert "incompatible types for comparison" in error_of('{{ eq "1" 1 }}')
    assert "non-comparable type" in error_of("{{ eq .metadata.labels .metadata.labels }}")


def test_ordering_functions_compare_integers_and_strings():
    assert r("{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge 2 2 }}") == "true true false true"
    assert r('{{ lt "a" "b" }} {{ gt "b" "a" }} {{ le "b" "a" }} {{ ge "a" "b" }}') == (
        "true true false false")
    assert "incompatible types for comparison" in error_of('{{ lt 1 "a" }}')
    assert "invalid type for comparison" in error_of("{{ lt true false }}")
    assert "invalid type for comparison" in error_of("{{ gt .metadata.labels 1 }}")


def test_and_and_or_return_the_deciding_argument_and_short_circuit():
    assert r('{{ or .metadata.labels.empty "fallback" }}') == "fallback"
    assert r('{{ or "first" "second" }} {{ or "" 0 }}') == "first 0"
    assert r('{{ and "a" "b" }} [{{ and "" "b" }}]') == "b []"
    # The second argument would fail (upper of an int) if it were evaluated.
    assert r("{{ and false (upper 1) }} {{ or true (upper 1) }}") == "false true"
    assert r('{{ "" | or "x" }} {{ "y" | and "x" }}') == "x y"


def test_not_negates_truthiness():
    assert r('{{ not "" }} {{ not "a" }} {{ not 0 }} {{ not .metadata.labels }}') == (
        "true false true false")


def test_printf_supports_the_common_verbs():
    assert r('{{ printf "%s=%d %v %q %%" "a" 5 true "x\\ny" }}') == 'a=5 true "x\\ny" %'
    assert r('{{ printf "%v" .metadata.labels }}', {"b": "2", "a": "1"}) == "map[a:1 b:2]"
    assert r('{{ printf "%q %t %T %T" 65 false "s" .metadata.labels }}') == (
        "'A' false string map[string]string")
    assert r('{{ printf "[%5s|%-5s|%05d|%05d]" "ab" "cd" 42 -42 }}') == "[   ab|cd   |00042|-0042]"


def test_printf_marks_mismatches_missing_and_extra_arguments_like_go():
    assert r('{{ printf "%d %s %t" "x" 1 "y" }}') == "%!d(string=x) %!s(int=1) %!t(string=y)"
    assert r('{{ printf "%d" true }}') == "%!d(bool=true)"
    assert r('{{ printf "%s %s" "only" }}') == "only %!s(MISSING)"
    assert r('{{ printf "%s" "a" "b" 3 }}') == "a%!(EXTRA string=b, int=3)"
    assert "unsupported printf directive" in error_of('{{ printf "%x" 255 }}')


def test_function_arguments_of_the_wrong_type_fail_at_render_time():
    message = error_of("{{ upper 5 }}")
    assert "error calling upper: wrong type for value; expected string; got int" in message
    assert "expected string; got bool" in error_of('{{ replace "a" true "abc" }}')
    assert "expected string; got int" in error_of("{{ printf 5 }}")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ upper }}", "wrong number of args for upper: want 1 got 0"),
        ('{{ replace "a" "b" }}', "wrong number of args for replace: want 3 got 2"),
        ('{{ "x" | lower "y" }}', "wrong number of args for lower: want 1 got 2"),
        ("{{ eq 1 }}", "wrong number of args for eq: want at least 2 got 1"),
        ("{{ if false }}{{ len }}{{ end }}", "wrong number of args for len"),  # even if not run
    ],
)
def test_wrong_argument_counts_are_rejected_when_parsing(text, message):
    with pytest.raises(TemplateError, match=message):
        parse(text)


# --- errors: unsupported constructs, fields and syntax -----------------------------------------


@pytest.mark.parametrize(
    "field",
    [".metadata.annotations", ".spec.os.image", ".metadata.name.foo", ".foo", "$.status",
     ".metadata.labels.a.b", "(.metadata.name).x", "(upper .metadata.name).x"],
)
def test_fields_outside_the_data_model_are_rejected_when_parsing(field):
    with pytest.raises(TemplateError, match="template references unsupported field"):
        parse("{{ " + field + " }}")


def test_fields_are_checked_against_the_with_value():
    assert r("{{ with .metadata }}{{ .name }}{{ end }}") == "dev-1"
    with pytest.raises(TemplateError, match="unsupported field"):
        parse("{{ with .metadata.name }}{{ .foo }}{{ end }}")
    with pytest.raises(TemplateError, match="unsupported field"):
        parse("{{ with .metadata.labels }}{{ .a.b }}{{ end }}")
    with pytest.raises(TemplateError, match="unsupported field"):
        parse('{{ with or .metadata.labels "x" }}{{ .a }}{{ end }}')


@pytest.mark.parametrize(
    "text",
    ["{{ range .metadata.labels }}x{{ end }}", '{{ define "x" }}x{{ end }}', '{{ template "x" }}',
     '{{ block "x" . }}x{{ end }}', "{{ if true }}{{ break }}{{ end }}",
     "{{ if true }}{{ continue }}{{ end }}", "{{ $x := .metadata.name }}",
     "{{ if $x := .metadata.name }}{{ end }}", "{{ $x }}", "{{ eq .metadata.name nil }}",
     "{{ 'a' }}"],
)
def test_unsupported_template_constructs_are_rejected(text):
    with pytest.raises(TemplateError, match="unsupported template construct"):
        parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{{ .metadata.name", "unclosed action"),
        ("{{ .metadata.name }", "unrecognized character in action"),
        ("{{ nope .metadata.name }}", 'function "nope" not defined'),
        ('{{ "abc }}', "unterminated quoted string"),
        ("{{ `abc }}", "unterminated raw quoted string"),
        ('{{ "\\q" }}', "invalid escape sequence"),
        ("{{ (upper .metadata.name }}", "unclosed left paren"),
        ("{{ upper .metadata.name) }}", "unexpected right paren"),
        ("{{ }}", "missing value for command"),
        ("{{ .metadata.name | }}", "missing command"),
        ('{{ "a""b" }}', "in operand"),
        ('{{ .metadata.name "x" }}', "can't give argument to non-function .metadata.name"),
        ('{{ "x" | .metadata.name }}', "can't give argument to non-function"),
        ("{{ 1.5 }}", "only integers are supported"),
        ("{{ 12ab }}", "bad number syntax"),
        ("{{ # }}", "unrecognized character in action"),
        ("{{ .metadata.labels.os-tag }}", "bad number syntax"),
    ],
)
def test_syntax_errors_are_reported(text, message):
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_template_error_is_a_value_error():
    assert issubclass(TemplateError, ValueError)


# --- missing keys: rollout versus validation ---------------------------------------------------


def test_a_missing_label_fails_rendering_in_rollout_mode_but_renders_empty_when_validating():
    tpl = "img:{{ .metadata.labels.tag }}"
    message = error_of(tpl, {})
    assert 'map has no entry for key "tag"' in message
    assert "<.metadata.labels.tag>" in message
    assert r(tpl, {}, missing_ok=True) == "img:"
    validate(tpl)


def test_a_missing_label_inside_with_or_if_follows_the_same_modes():
    tpl = "{{ with .metadata.labels }}{{ .x }}{{ end }}"
    assert 'map has no entry for key "x"' in error_of(tpl, {"y": "1"})
    assert r(tpl, {"y": "1"}, missing_ok=True) == ""
    assert r("{{ if .metadata.labels.x }}T{{ else }}F{{ end }}", {}, missing_ok=True) == "F"


def test_index_and_get_or_default_never_fail_on_a_missing_label_in_rollout_mode():
    assert r('[{{ index .metadata.labels "x" }}]', {}) == "[]"
    assert r('{{ getOrDefault .metadata.labels "x" "d" }}', {}) == "d"


def test_an_error_in_an_untaken_branch_does_not_fail_rendering():
    assert r("{{ if false }}{{ .metadata.labels.absent }}{{ end }}ok", {}) == "ok"


# --- validate, parse once / render many --------------------------------------------------------


def test_validate_accepts_good_templates_and_reports_parse_and_runtime_problems():
    validate('{{ getOrDefault .metadata.labels "k" "d" | upper }}')
    validate("{{ .metadata.labels.anything }}")
    with pytest.raises(TemplateError, match="unsupported field"):
        validate("{{ .metadata.annotations.x }}")
    with pytest.raises(TemplateError, match="expected string; got int"):
        validate("{{ upper 1 }}")
    with pytest.raises(TemplateError, match='function "foo" not defined'):
        validate("{{ foo }}")


def test_validate_renders_for_a_dummy_device_without_labels():
    with pytest.raises(TemplateError, match="error calling upper"):
        validate('{{ if eq .metadata.name "dummy" }}{{ upper 1 }}{{ end }}')
    validate('{{ if eq .metadata.name "real" }}{{ upper 1 }}{{ end }}')


def test_a_parsed_template_renders_for_many_devices_with_different_labels():
    tpl = parse('os:{{ getOrDefault .metadata.labels "tag" "stable" }}@{{ .metadata.name }}')
    assert isinstance(tpl, Template)
    assert tpl.render("a", {"tag": "v1"}) == "os:v1@a"
    assert tpl.render("b", {}) == "os:stable@b"


def test_render_caches_parsed_templates():
    text = "cached {{ .metadata.name }} " + str(time.time())
    templating._parse_cached.cache_clear()
    for i in range(5):
        assert render(text, f"d{i}", {}) == f"cached d{i} " + text.rsplit(" ", 1)[1]
    assert templating._parse_cached.cache_info().hits == 4


def test_rendering_ten_thousand_devices_is_fast():
    tpl = parse('quay.io/org/os:{{ getOrDefault .metadata.labels "os-tag" "stable" }}-'
                '{{ .metadata.labels.site | upper | replace " " "-" }}-{{ .metadata.name }}')
    labels = [{"site": f"site {i}", "os-tag": f"v{i % 3}"} for i in range(10_000)]
    start = time.perf_counter()
    for i, lab in enumerate(labels):
        tpl.render(f"dev-{i}", lab)
    assert time.perf_counter() - start < 2.0
