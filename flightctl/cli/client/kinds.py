"""Resource kinds as the command line names them, and where each lives in the API.

A :class:`Kind` knows its singular, plural and short names (``device``, ``devices``, ``dev``),
its collection path, its API version, and what the CLI may do with it. Arguments name
resources as ``TYPE``, ``TYPE/NAME`` or ``TYPE NAME [NAME...]`` (:func:`parse_resource_args`).
"""

from __future__ import annotations

from dataclasses import dataclass

from flightctl.cli.client.errors import CliError


@dataclass(frozen=True)
class Kind:
    """One resource kind of the API, from the command line's point of view."""

    kind: str  # the ``kind`` of an object, e.g. "Device"
    plural: str  # the collection path segment and the CLI's plural, e.g. "devices"
    singular: str
    short: str
    api_version: str = "v1beta1"
    gettable: bool = True  # GET /<plural>/{name} exists
    listable: bool = True
    labels: bool = True  # the list accepts labelSelector
    deletable: bool = True
    apply: str = "put"  # how ``apply`` writes it: "put", "post", "post-put" or "" (not at all)
    editable: bool = True
    parent: str = ""  # nested kinds: the option naming the parent ("fleetname", "catalog")

    def collection(self, parent: str | None = None) -> str:
        """The collection path under /api/v1 (nested kinds need their parent's name)."""
        if self.plural == "templateversions":
            if not parent:
                raise CliError("templateversions need --fleetname FLEET")
            return f"fleets/{parent}/templateversions"
        if self.plural == "catalogitems" and parent:
            return f"catalogs/{parent}/items"
        return self.plural

    def item(self, name: str, parent: str | None = None) -> str:
        if self.plural == "catalogitems" and not parent:
            raise CliError("a single catalog item needs --catalog CATALOG")
        return f"{self.collection(parent)}/{name}"


KINDS: tuple[Kind, ...] = (
    Kind("Device", "devices", "device", "dev"),
    Kind("Fleet", "fleets", "fleet", "flt"),
    Kind("EnrollmentRequest", "enrollmentrequests", "enrollmentrequest", "er"),
    Kind("CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest",
         "csr"),
    Kind("Repository", "repositories", "repository", "repo"),
    Kind("ResourceSync", "resourcesyncs", "resourcesync", "rs"),
    Kind("TemplateVersion", "templateversions", "templateversion", "tv", labels=True,
         apply="", editable=False, parent="fleetname"),
    Kind("Event", "events", "event", "ev", gettable=False, labels=False, deletable=False,
         apply="", editable=False),
    Kind("Organization", "organizations", "organization", "org", gettable=False, labels=False,
         deletable=False, apply="", editable=False),
    Kind("AuthProvider", "authproviders", "authprovider", "ap"),
    Kind("Catalog", "catalogs", "catalog", "cat", api_version="v1alpha1"),
    Kind("CatalogItem", "catalogitems", "catalogitem", "ci", api_version="v1alpha1",
         parent="catalog"),
    Kind("ImageBuild", "imagebuilds", "imagebuild", "ib", api_version="v1alpha1", apply="post",
         editable=False),
    Kind("ImageExport", "imageexports", "imageexport", "ie", api_version="v1alpha1",
         apply="post", editable=False),
    Kind("ImagePromotion", "imagepromotions", "imagepromotion", "ip", api_version="v1alpha1",
         apply="post-put"),
    Kind("Vulnerability", "vulnerabilities", "vulnerability", "vuln", api_version="v1alpha1",
         gettable=False, labels=False, deletable=False, apply="", editable=False),
)

_BY_NAME: dict[str, Kind] = {}
for _kind in KINDS:
    for _name in (_kind.plural, _kind.singular, _kind.short, _kind.kind.lower()):
        _BY_NAME[_name] = _kind


def all_names() -> list[str]:
    """Every accepted spelling, for shell completion and error messages."""
    return sorted(_BY_NAME)


def lookup(name: str) -> Kind:
    """The kind a command-line word names (case-insensitive); unknown words are an error."""
    kind = _BY_NAME.get(name.lower())
    if kind is None:
        plurals = ", ".join(k.plural for k in KINDS)
        raise CliError(f'unknown resource type "{name}"; known types: {plurals}')
    return kind


def by_object_kind(kind: str) -> Kind | None:
    """The kind of a manifest's ``kind:`` field (``Device``, ``Fleet``...)."""
    for candidate in KINDS:
        if candidate.kind == kind:
            return candidate
    return None


def parse_resource_args(args: tuple[str, ...] | list[str]) -> tuple[Kind, list[str]]:
    """``TYPE``, ``TYPE/NAME [TYPE/NAME...]`` or ``TYPE NAME [NAME...]`` → kind and names."""
    if not args:
        raise CliError("name a resource type, e.g. 'devices' or 'fleet/NAME'")
    first = args[0]
    if "/" in first:
        kind = None
        names = []
        for arg in args:
            type_name, sep, name = arg.partition("/")
            if not sep or not type_name or not name:
                raise CliError(f'"{arg}" is not TYPE/NAME; mixing TYPE/NAME with bare names '
                               "is not supported")
            this = lookup(type_name)
            if kind is not None and this is not kind:
                raise CliError("all TYPE/NAME arguments must be of the same type")
            kind = this
            names.append(name)
        return kind, names
    return lookup(first), list(args[1:])


def parse_single(arg: str, allowed: tuple[str, ...], verb: str) -> tuple[Kind, str]:
    """One ``TYPE/NAME`` whose kind is among ``allowed`` (plural names)."""
    type_name, sep, name = arg.partition("/")
    if not sep or not name:
        raise CliError(f'"{arg}" is not TYPE/NAME (e.g. {allowed[0]}/NAME)')
    kind = lookup(type_name)
    if kind.plural not in allowed:
        raise CliError(f"cannot {verb} {kind.plural}; {verb} works on: "
                       f"{', '.join(allowed)}")
    return kind, name
