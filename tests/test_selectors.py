"""Selector grammar and its translation to Django ``Q`` objects (pure Python, no database)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db.models import Q

from flightctl.api.selectors import (
    Field,
    Requirement,
    SelectorError,
    field_selector_q,
    label_selector_q,
    match_labels,
    parse_selector,
)

R = Requirement
T0 = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
T1 = datetime(2024, 1, 3, 0, 0, 0, tzinfo=UTC)

FIELDS = {
    "metadata.name": Field("name"),
    "metadata.owner": Field("owner"),
    "metadata.creationTimestamp": Field("created_at", "timestamp"),
    "status.summary.status": Field("summary_status"),
    "spec.replicas": Field("spec__replicas", "number"),
    "status.approval.approved": Field("status__approval__approved", "bool"),
    "spec.tags": Field("tags", "array"),
}


def isnull(lookup: str) -> Q:
    return Q(**{f"{lookup}__isnull": True})


# -- grammar ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("k=v", [R("k", "=", ("v",))]),
        ("k==v", [R("k", "=", ("v",))]),
        ("k!=v", [R("k", "!=", ("v",))]),
        ("k in (a,b)", [R("k", "in", ("a", "b"))]),
        ("k notin (a,b)", [R("k", "notin", ("a", "b"))]),
        ("k", [R("k", "exists")]),
        ("!k", [R("k", "!")]),
        ("k contains v", [R("k", "contains", ("v",))]),
        ("k notcontains v", [R("k", "notcontains", ("v",))]),
        ("k<1", [R("k", "<", ("1",))]),
        ("k<=1", [R("k", "<=", ("1",))]),
        ("k>1", [R("k", ">", ("1",))]),
        ("k>=1", [R("k", ">=", ("1",))]),
    ],
)
def test_every_operator_form_parses_to_its_requirement(text, expected):
    assert parse_selector(text) == expected


def test_commas_join_requirements_in_order():
    assert parse_selector("a=1,!b,c,d in (x)") == [
        R("a", "=", ("1",)),
        R("b", "!"),
        R("c", "exists"),
        R("d", "in", ("x",)),
    ]


def test_whitespace_is_allowed_around_operators_and_commas():
    text = "  a = 1 ,  b  !=  2,c==3 , d in( x , y ) ,e notin (z),  ! f ,g  , h >= 4 "
    assert parse_selector(text) == [
        R("a", "=", ("1",)),
        R("b", "!=", ("2",)),
        R("c", "=", ("3",)),
        R("d", "in", ("x", "y")),
        R("e", "notin", ("z",)),
        R("f", "!"),
        R("g", "exists"),
        R("h", ">=", ("4",)),
    ]


@pytest.mark.parametrize("text", ["", "   ", "\t\n", None])
def test_a_blank_selector_has_no_requirements(text):
    assert parse_selector(text) == []


def test_backslash_escapes_make_separators_part_of_a_value():
    assert parse_selector(r"k=a\,b\ c\\d") == [R("k", "=", ("a,b c\\d",))]
    assert parse_selector(r"k in (a\,b, c\)d)") == [R("k", "in", ("a,b", "c)d"))]


def test_values_inside_parentheses_may_contain_operator_characters():
    assert parse_selector("k in (a=b, c!=d, <e>, f(g)") == [
        R("k", "in", ("a=b", "c!=d", "<e>", "f(g"))
    ]


def test_a_single_value_may_contain_equals_signs_and_slashes():
    assert parse_selector("metadata.owner=Fleet/a=b") == [R("metadata.owner", "=", ("Fleet/a=b",))]


def test_an_empty_value_is_the_empty_string():
    assert parse_selector("k=,j") == [R("k", "=", ("",)), R("j", "exists")]
    assert parse_selector("k in ()") == [R("k", "in", ("",))]
    assert parse_selector("k in (a,,b)") == [R("k", "in", ("a", "", "b"))]


def test_repeated_values_in_a_set_collapse_keeping_first_order():
    assert parse_selector("k in (b,a,b)") == [R("k", "in", ("b", "a"))]


def test_operator_words_need_a_separate_key():
    # "kin" is a key, not "k in": the key swallows letters, so the word must stand alone.
    assert parse_selector("kin") == [R("kin", "exists")]
    assert parse_selector("in in (in)") == [R("in", "in", ("in",))]


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("k in (a", "expected ')'"),
        ("k in (a b)", "expected ',' or ')', found 'b'"),
        ("k in a", "expected '(' after 'in'"),
        ("k notin", "expected '(' after 'notin'"),
        ("a=b,", "expected a requirement after ','"),
        ("a=b, ", "expected a requirement after ','"),
        (",a=b", "expected a key, found ','"),
        ("a=b,,c", "expected a key, found ','"),
        ("=v", "expected a key, found '='"),
        ("!", "expected a key, found end of selector"),
        ("!=v", "expected a key, found '='"),
        ("x y", "expected an operator after \"x\", found 'y'"),
        ("x likes y", "expected an operator after \"x\", found 'likes'"),
        ("x (y)", "expected an operator after \"x\", found '('"),
        ("a=b c", "expected ',' or end of selector after the value of \"a\", found 'c'"),
        ("!a=b", "expected ',' or end of selector after '!a', found '='"),
        ("k=v\\", "trailing '\\' escapes nothing"),
    ],
)
def test_syntax_errors_say_what_was_expected(text, detail):
    with pytest.raises(SelectorError) as excinfo:
        parse_selector(text)
    quoted = text.replace("\\", "\\\\").replace('"', '\\"')
    assert str(excinfo.value) == f'invalid selector "{quoted}": {detail}'


def test_selector_error_is_a_value_error():
    assert issubclass(SelectorError, ValueError)


# -- label selectors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("env=prod", Q(labels__contains={"env": "prod"})),
        ("env==prod", Q(labels__contains={"env": "prod"})),
        ("env!=prod", ~Q(labels__contains={"env": "prod"})),
        ("env", Q(labels__has_key="env")),
        ("!env", ~Q(labels__has_key="env")),
        ("env in (prod)", Q(labels__contains={"env": "prod"})),
        (
            "env in (prod,dev)",
            Q(labels__contains={"env": "prod"}) | Q(labels__contains={"env": "dev"}),
        ),
        (
            "env notin (prod,dev)",
            ~(Q(labels__contains={"env": "prod"}) | Q(labels__contains={"env": "dev"})),
        ),
        ("env in ()", Q(labels__contains={"env": ""})),
        ("example.com/site=berlin", Q(labels__contains={"example.com/site": "berlin"})),
    ],
)
def test_label_requirements_become_indexable_jsonb_tests(text, expected):
    assert label_selector_q(text) == expected


def test_label_requirements_are_anded():
    assert label_selector_q("a=1, !b, c") == (
        Q(labels__contains={"a": "1"}) & ~Q(labels__has_key="b") & Q(labels__has_key="c")
    )


def test_label_selector_can_target_another_column():
    assert label_selector_q("a=1,b", column="device_labels") == (
        Q(device_labels__contains={"a": "1"}) & Q(device_labels__has_key="b")
    )


@pytest.mark.parametrize("text", ["", "  ", None])
def test_a_blank_label_selector_selects_everything(text):
    assert label_selector_q(text) == Q()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("-bad=1", 'key: Invalid value: "-bad"'),
        ("a/b/c=1", 'key: Invalid value: "a/b/c"'),
        ("Bad_Prefix/x=1", "prefix part"),
        ("k=-bad", 'values[0]: Invalid value: "-bad"'),
        ("k in (ok,bad value)", "expected ',' or ')'"),
        ("k in (ok,bad\\ value)", 'values[1]: Invalid value: "bad value"'),
        ("k=" + "v" * 64, "must be no more than 63 characters"),
        ("!-bad", 'key: Invalid value: "-bad"'),
    ],
)
def test_invalid_label_keys_and_values_are_rejected(text, fragment):
    with pytest.raises(SelectorError) as excinfo:
        label_selector_q(text)
    assert fragment in str(excinfo.value)


@pytest.mark.parametrize("op", ["contains v", "notcontains v", "<1", "<=1", ">1", ">=1"])
def test_field_only_operators_are_rejected_in_label_selectors(op):
    with pytest.raises(SelectorError, match="is not supported in label selectors"):
        label_selector_q(f"k {op}")


# -- field selectors: strings ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metadata.name=dev1", Q(name="dev1")),
        ("metadata.name==dev1", Q(name="dev1")),
        ("metadata.name!=dev1", ~Q(name="dev1") | isnull("name")),
        ("metadata.name in (a,b)", Q(name__in=["a", "b"])),
        ("metadata.name notin (a,b)", ~Q(name__in=["a", "b"]) | isnull("name")),
        ("metadata.owner contains Fleet/", Q(owner__contains="Fleet/")),
        ("metadata.owner notcontains Fleet/", ~Q(owner__contains="Fleet/") | isnull("owner")),
        ("metadata.owner", Q(owner__isnull=False)),
        ("!metadata.owner", Q(owner__isnull=True)),
        (
            "status.summary.status in (Online,Degraded)",
            Q(summary_status__in=["Online", "Degraded"]),
        ),
    ],
)
def test_string_fields_support_equality_sets_substrings_and_existence(text, expected):
    assert field_selector_q(text, FIELDS) == expected


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_string_fields_reject_ordering(op):
    with pytest.raises(SelectorError) as excinfo:
        field_selector_q(f"metadata.name{op}a", FIELDS)
    assert f'operator "{op}" is not supported for field "metadata.name" of type string' in str(
        excinfo.value
    )


# -- field selectors: timestamps -------------------------------------------------------------

TS = "metadata.creationTimestamp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{TS}=2024-01-02T03:04:05Z", Q(created_at=T0)),
        (f"{TS}!=2024-01-02T03:04:05Z", ~Q(created_at=T0) | isnull("created_at")),
        (f"{TS}<2024-01-02T03:04:05Z", Q(created_at__lt=T0)),
        (f"{TS}<=2024-01-02T03:04:05Z", Q(created_at__lte=T0)),
        (f"{TS}>2024-01-02T03:04:05Z", Q(created_at__gt=T0)),
        (f"{TS}>=2024-01-02T03:04:05Z", Q(created_at__gte=T0)),
        (
            f"{TS} in (2024-01-02T03:04:05Z, 2024-01-03T00:00:00Z)",
            Q(created_at__in=[T0, T1]),
        ),
        (
            f"{TS} notin (2024-01-02T03:04:05Z)",
            ~Q(created_at__in=[T0]) | isnull("created_at"),
        ),
        (TS, Q(created_at__isnull=False)),
        (f"!{TS}", Q(created_at__isnull=True)),
    ],
)
def test_timestamp_fields_support_comparisons_with_rfc3339_values(text, expected):
    assert field_selector_q(text, FIELDS) == expected


def test_timestamps_keep_their_offset_and_truncate_nanoseconds():
    q = field_selector_q(f"{TS}>2024-01-02T05:04:05.123456789+02:00", FIELDS)
    (_, value) = q.children[0]
    assert value == datetime(2024, 1, 2, 5, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert value == T0.replace(microsecond=123456)


def test_a_range_is_two_requirements():
    text = f"{TS}>=2024-01-02T03:04:05Z,{TS}<2024-01-03T00:00:00Z"
    assert field_selector_q(text, FIELDS) == Q(created_at__gte=T0) & Q(created_at__lt=T1)


@pytest.mark.parametrize(
    "value",
    ["2024-01-02", "2024-01-02 03:04:05Z", "2024-01-02T03:04:05", "2024-13-02T03:04:05Z", "now"],
)
def test_timestamps_must_be_rfc3339(value):
    with pytest.raises(SelectorError) as excinfo:
        field_selector_q(f"{TS}>{value}".replace(" ", "\\ "), FIELDS)  # spaces escaped
    assert f'value "{value}" of field "{TS}" is not an RFC3339 timestamp' in str(excinfo.value)


@pytest.mark.parametrize("op", ["contains", "notcontains"])
def test_timestamp_fields_reject_substring_operators(op):
    with pytest.raises(SelectorError, match=f'operator "{op}" is not supported'):
        field_selector_q(f"{TS} {op} 2024", FIELDS)


# -- field selectors: numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spec.replicas=3", Q(spec__replicas=3)),
        ("spec.replicas!=3", ~Q(spec__replicas=3) | isnull("spec__replicas")),
        ("spec.replicas<3", Q(spec__replicas__lt=3)),
        ("spec.replicas<=3", Q(spec__replicas__lte=3)),
        ("spec.replicas>-3", Q(spec__replicas__gt=-3)),
        ("spec.replicas>=2.5", Q(spec__replicas__gte=2.5)),
        ("spec.replicas in (1,2e1,.5)", Q(spec__replicas__in=[1, 20.0, 0.5])),
        ("spec.replicas notin (1)", ~Q(spec__replicas__in=[1]) | isnull("spec__replicas")),
        ("spec.replicas", Q(spec__replicas__isnull=False)),
        ("!spec.replicas", Q(spec__replicas__isnull=True)),
    ],
)
def test_number_fields_support_comparisons(text, expected):
    assert field_selector_q(text, FIELDS) == expected


def test_integers_stay_integers():
    (_, value) = field_selector_q("spec.replicas=7", FIELDS).children[0]
    assert type(value) is int


@pytest.mark.parametrize("value", ["abc", "1_000", "nan", "inf", "1e", "", "٣"])
def test_numbers_must_be_decimal(value):
    with pytest.raises(SelectorError, match="is not a number"):
        field_selector_q(f"spec.replicas={value}", FIELDS)


@pytest.mark.parametrize("op", ["contains", "notcontains"])
def test_number_fields_reject_substring_operators(op):
    with pytest.raises(SelectorError, match=f'operator "{op}" is not supported'):
        field_selector_q(f"spec.replicas {op} 1", FIELDS)


# -- field selectors: booleans ---------------------------------------------------------------

APPROVED = "status.approval.approved"
APPROVED_PATH = "status__approval__approved"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{APPROVED}=true", Q(**{APPROVED_PATH: True})),
        (f"{APPROVED}==false", Q(**{APPROVED_PATH: False})),
        (f"{APPROVED}!=true", ~Q(**{APPROVED_PATH: True}) | isnull(APPROVED_PATH)),
        (f"{APPROVED} in (true,false)", Q(**{f"{APPROVED_PATH}__in": [True, False]})),
        (
            f"{APPROVED} notin (true)",
            ~Q(**{f"{APPROVED_PATH}__in": [True]}) | isnull(APPROVED_PATH),
        ),
        (APPROVED, Q(**{f"{APPROVED_PATH}__isnull": False})),
        (f"!{APPROVED}", Q(**{f"{APPROVED_PATH}__isnull": True})),
    ],
)
def test_bool_fields_support_equality_and_sets(text, expected):
    assert field_selector_q(text, FIELDS) == expected


@pytest.mark.parametrize("op", ["<1", "<=1", ">1", ">=1", " contains t", " notcontains t"])
def test_bool_fields_reject_ordering_and_substrings(op):
    with pytest.raises(SelectorError, match="of type bool"):
        field_selector_q(f"{APPROVED}{op}", FIELDS)


@pytest.mark.parametrize("value", ["yes", "no", "", "tru"])
def test_booleans_must_be_true_or_false(value):
    with pytest.raises(SelectorError, match="is not a boolean"):
        field_selector_q(f"{APPROVED}={value}", FIELDS)


# -- field selectors: arrays -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("spec.tags in (a,b)", Q(tags__overlap=["a", "b"])),
        ("spec.tags notin (a,b)", ~Q(tags__overlap=["a", "b"]) | isnull("tags")),
        ("spec.tags contains a", Q(tags__contains=["a"])),
        ("spec.tags notcontains a", ~Q(tags__contains=["a"]) | isnull("tags")),
        ("spec.tags", Q(tags__isnull=False)),
        ("!spec.tags", Q(tags__isnull=True)),
    ],
)
def test_array_fields_support_overlap_and_membership(text, expected):
    assert field_selector_q(text, FIELDS) == expected


@pytest.mark.parametrize("op", ["=a", "==a", "!=a", "<a", "<=a", ">a", ">=a"])
def test_array_fields_reject_equality_and_ordering(op):
    with pytest.raises(SelectorError, match="of type array"):
        field_selector_q(f"spec.tags{op}", FIELDS)


# -- field selectors: names, composition, composites -----------------------------------------


def test_an_unknown_field_lists_the_supported_names_sorted():
    fields = {"metadata.owner": Field("owner"), "metadata.name": Field("name")}
    with pytest.raises(SelectorError) as excinfo:
        field_selector_q("text=abc", fields)
    assert str(excinfo.value) == (
        'unknown or unsupported selector: unable to resolve selector name "text". '
        "Supported selectors are: [metadata.name metadata.owner]"
    )


def test_label_style_names_are_not_field_selectors():
    with pytest.raises(SelectorError, match='selector name "metadata.labels.env"'):
        field_selector_q("metadata.labels.env=prod", FIELDS)


def test_field_requirements_are_anded():
    text = "metadata.owner=Fleet/f1, status.summary.status notin (Online), !spec.tags"
    assert field_selector_q(text, FIELDS) == (
        Q(owner="Fleet/f1")
        & (~Q(summary_status__in=["Online"]) | isnull("summary_status"))
        & Q(tags__isnull=True)
    )


@pytest.mark.parametrize("text", ["", "   ", None])
def test_a_blank_field_selector_selects_everything(text):
    assert field_selector_q(text, FIELDS) == Q()


def test_a_composite_field_receives_the_operator_and_raw_values():
    calls = []

    def name_or_alias(op: str, values: list[str]) -> Q:
        calls.append((op, values))
        return Q(name__in=values) | Q(labels__alias__in=values)

    fields = {"metadata.nameOrAlias": Field(name_or_alias)}
    q = field_selector_q("metadata.nameOrAlias in (a, b)", fields)
    assert q == Q(name__in=["a", "b"]) | Q(labels__alias__in=["a", "b"])
    field_selector_q("metadata.nameOrAlias", fields)
    assert calls == [("in", ["a", "b"]), ("exists", [])]


def test_a_composite_field_is_still_checked_against_its_type():
    fields = {"x": Field(lambda op, values: Q(), "number")}
    with pytest.raises(SelectorError, match='operator "contains" is not supported'):
        field_selector_q("x contains 1", fields)
    with pytest.raises(SelectorError, match="is not a number"):
        field_selector_q("x=one", fields)


def test_syntax_errors_surface_from_field_selectors():
    with pytest.raises(SelectorError, match=r"expected '\)'"):
        field_selector_q("metadata.name in (a", FIELDS)


def test_a_field_with_an_unknown_type_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown selector field type 'text'"):
        Field("name", "text")


# -- match_labels ----------------------------------------------------------------------------

LABELS = {"env": "prod", "site": "berlin", "empty": ""}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("env=prod", True),
        ("env==prod", True),
        ("env=dev", False),
        ("env!=dev", True),
        ("env!=prod", False),
        ("missing!=x", True),
        ("env in (dev,prod)", True),
        ("env in (dev)", False),
        ("missing in (x)", False),
        ("env notin (dev)", True),
        ("env notin (prod)", False),
        ("missing notin (x)", True),
        ("env", True),
        ("missing", False),
        ("!missing", True),
        ("!env", False),
        ("empty=", True),
        ("empty in ()", True),
        ("env=prod,site=berlin", True),
        ("env=prod,site=paris", False),
    ],
)
def test_match_labels_follows_kubernetes_semantics(selector, expected):
    assert match_labels(selector, LABELS) is expected


def test_match_labels_accepts_parsed_requirements():
    requirements = parse_selector("env in (prod), !missing")
    assert match_labels(requirements, LABELS) is True
    assert match_labels([R("env", "=", ("dev",))], LABELS) is False


def test_match_labels_treats_missing_labels_as_empty():
    assert match_labels("!env", None) is True
    assert match_labels("env", {}) is False


def test_match_labels_validates_like_the_query_does():
    with pytest.raises(SelectorError, match="is not supported in label selectors"):
        match_labels([R("env", "contains", ("pr",))], LABELS)
    with pytest.raises(SelectorError, match='key: Invalid value: "-x"'):
        match_labels("-x=1", LABELS)
