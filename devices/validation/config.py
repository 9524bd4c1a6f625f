"""Validation of ``spec.config``: the config providers that put files on a device.

``ConfigProviderSpec`` is a oneOf without discriminator: the provider kind is the single key
present among ``gitRef``, ``httpRef``, ``inline`` and ``secretRef`` (api.md §3.2). Every
provider has a unique ``name``; the device files produced by inline and HTTP providers must not
collide, and none may land in paths the agent owns.
"""

from __future__ import annotations

from flightctl.api.validation import DNS1123_SUBDOMAIN_MSG, Errors

from .common import (
    SpecContext,
    as_list,
    as_object,
    as_string,
    check_device_path,
    check_inline_content,
    check_max_len,
    check_user_or_group,
    is_int,
    one_of_keys,
)

PROVIDER_KINDS = ("gitRef", "httpRef", "inline", "secretRef")
MAX_FILE_MODE = 0o7777


def validate_config(ctx: SpecContext, path: str, value) -> None:
    providers = as_list(ctx.errors, path, value)
    if providers is None:
        return
    names: set[str] = set()
    # Device paths written by inline and HTTP providers, for the uniqueness rule.
    device_paths: set[str] = set()
    for index, item in enumerate(providers):
        item_path = f"{path}[{index}]"
        provider = as_object(ctx.errors, item_path, item)
        if provider is None:
            continue
        _check_provider_name(ctx.errors, f"{item_path}.name", provider.get("name"), names)
        kind = one_of_keys(ctx.errors, item_path, provider, PROVIDER_KINDS)
        if kind is not None:
            _VALIDATORS[kind](ctx, f"{item_path}.{kind}", provider[kind], device_paths)


def _check_provider_name(errors: Errors, path: str, name, seen: set[str]) -> None:
    if name is None or name == "":
        # The reference reports a missing name as an invalid empty value (agent.md §10.3).
        errors.invalid(path, "", DNS1123_SUBDOMAIN_MSG)
        return
    if not isinstance(name, str):
        errors.invalid(path, name, "must be a string")
        return
    if errors.dns1123_subdomain(path, name):
        if name in seen:
            errors.invalid(path, name, "config provider name must be unique")
        seen.add(name)


def _check_unique_device_path(errors: Errors, path: str, value, seen: set[str]) -> None:
    if not isinstance(value, str):
        return
    if value in seen:
        errors.invalid(path, value, "device path must be unique for all config providers")
    seen.add(value)


def _required_string(errors: Errors, path: str, value, max_len: int | None = None) -> str | None:
    text = as_string(errors, path, value, required=True)
    if text is not None and max_len is not None:
        check_max_len(errors, path, text, max_len)
    return text


def _repository_ref(errors: Errors, path: str, value) -> None:
    if _required_string(errors, path, value) is not None:
        errors.dns1123_subdomain(path, value)


def _templated_string(ctx: SpecContext, path: str, value, *, required: bool, max_len: int):
    """A field that accepts placeholders in fleet templates and is otherwise length-limited."""
    text = as_string(ctx.errors, path, value, required=required)
    if text is not None and not ctx.templated(path, text):
        check_max_len(ctx.errors, path, text, max_len)


def _templated_device_path(ctx: SpecContext, path: str, value) -> None:
    if value is None or value == "":
        ctx.errors.invalid(path, "", "must be an absolute path")
        return
    if not ctx.templated(path, value):
        check_device_path(ctx.errors, path, value)


def _git(ctx: SpecContext, path: str, value, _device_paths: set[str]) -> None:
    ref = as_object(ctx.errors, path, value)
    if ref is None:
        return
    _repository_ref(ctx.errors, f"{path}.repository", ref.get("repository"))
    _templated_string(
        ctx, f"{path}.targetRevision", ref.get("targetRevision"), required=True, max_len=1024
    )
    _templated_string(ctx, f"{path}.path", ref.get("path"), required=True, max_len=2048)


def _http(ctx: SpecContext, path: str, value, device_paths: set[str]) -> None:
    ref = as_object(ctx.errors, path, value)
    if ref is None:
        return
    _repository_ref(ctx.errors, f"{path}.repository", ref.get("repository"))
    _templated_string(ctx, f"{path}.suffix", ref.get("suffix"), required=False, max_len=2048)
    file_path = ref.get("filePath")
    _templated_device_path(ctx, f"{path}.filePath", file_path)
    _check_unique_device_path(ctx.errors, f"{path}.filePath", file_path, device_paths)


def _secret(ctx: SpecContext, path: str, value, _device_paths: set[str]) -> None:
    ref = as_object(ctx.errors, path, value)
    if ref is None:
        return
    for key in ("name", "namespace"):
        text = as_string(ctx.errors, f"{path}.{key}", ref.get(key), required=True)
        if text is not None and not ctx.templated(f"{path}.{key}", text):
            ctx.errors.dns1123_label(f"{path}.{key}", text)
    _templated_device_path(ctx, f"{path}.mountPath", ref.get("mountPath"))
    check_user_or_group(ctx.errors, f"{path}.user", ref.get("user"))
    check_user_or_group(ctx.errors, f"{path}.group", ref.get("group"))


def _inline(ctx: SpecContext, path: str, value, device_paths: set[str]) -> None:
    files = as_list(ctx.errors, path, value)
    if files is None:
        return
    for index, item in enumerate(files):
        file_path = f"{path}[{index}]"
        spec = as_object(ctx.errors, file_path, item)
        if spec is not None:
            _file_spec(ctx, file_path, spec, device_paths)


def _file_spec(ctx: SpecContext, path: str, spec: dict, device_paths: set[str]) -> None:
    errors = ctx.errors
    _templated_device_path(ctx, f"{path}.path", spec.get("path"))
    _check_unique_device_path(errors, f"{path}.path", spec.get("path"), device_paths)
    mode = spec.get("mode")
    if mode is not None and (not is_int(mode) or not 0 <= mode <= MAX_FILE_MODE):
        errors.invalid(f"{path}.mode", mode, "is not a valid mode (must be between 0 and 07777)")
    check_user_or_group(errors, f"{path}.user", spec.get("user"))
    check_user_or_group(errors, f"{path}.group", spec.get("group"))
    check_inline_content(
        ctx, path, spec.get("content"), spec.get("contentEncoding"), template_ok=True
    )


_VALIDATORS = {"gitRef": _git, "httpRef": _http, "inline": _inline, "secretRef": _secret}
