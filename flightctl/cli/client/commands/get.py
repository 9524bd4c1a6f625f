"""``flightctl get``: show one, several or a list of resources of one kind.

One name is one ``GET /<plural>/<name>``; several names are one list call with
``fieldSelector=metadata.name in (a,b)``; otherwise the collection is listed with the given
selectors. Tables and ``-o name`` (``kind/name`` lines) follow ``continue`` tokens to the end
(unless ``--limit`` asks for at most one page); ``-o json|yaml`` print the API's answer as it
came.
"""

from __future__ import annotations

import click

from flightctl.cli.client import output
from flightctl.cli.client.cli import Env, cli, common_options
from flightctl.cli.client.errors import CliError
from flightctl.cli.client.http import MAX_PAGE
from flightctl.cli.client.kinds import Kind, parse_resource_args


@cli.command("get", context_settings={"ignore_unknown_options": False})
@click.argument("resources", nargs=-1, required=True, metavar="TYPE[/NAME] [NAME...]")
@click.option("-l", "--selector", "label_selector", metavar="SELECTOR",
              help="Label selector, e.g. 'site=berlin,stage in (prod)'.")
@click.option("--field-selector", metavar="SELECTOR",
              help="Field selector, e.g. 'status.summary.status=Online'.")
@click.option("-o", "--output", "fmt", default="table", show_default=True,
              type=click.Choice(output.FORMATS),
              help="Output format.")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="At most this many items (one page); 0 lists everything.")
@click.option("--continue", "continue_token", metavar="TOKEN",
              help="Continue a list from a token of an earlier page.")
@click.option("--fleetname", metavar="FLEET", help="Fleet of the template versions.")
@click.option("--catalog", metavar="CATALOG", help="Catalog of the catalog items.")
@click.option("--rendered", is_flag=True, help="The rendered spec of one device (YAML).")
@click.option("-s", "--summary", is_flag=True,
              help="Add device counts (devices: status summary; fleets: DEVICES column).")
@click.option("--summary-only", is_flag=True, help="Only the status summary of the devices.")
@click.option("--last-seen", is_flag=True, help="When one device last reported.")
@click.option("--with-exports", is_flag=True, help="Image builds with their exports.")
@click.option("--sort-by", metavar="FIELD", help="Vulnerabilities: sort field.")
@click.option("--order", type=click.Choice(["asc", "desc"]), help="Sort order.")
@click.option("--cve-id", metavar="CVE", help="Devices affected by this CVE.")
@common_options
def get(env: Env, resources, label_selector, field_selector, fmt, limit, continue_token,
        fleetname, catalog, rendered, summary, summary_only, last_seen, with_exports, sort_by,
        order, cve_id):
    """Show resources: 'get devices', 'get fleet/NAME', 'get er N1 N2', 'get tv --fleetname F'.

    Types (singular, plural or short): device (dev), fleet (flt), enrollmentrequest (er),
    certificatesigningrequest (csr), repository (repo), resourcesync (rs), templateversion
    (tv), event (ev), organization (org), authprovider (ap), catalog (cat), catalogitem (ci),
    imagebuild (ib), imageexport (ie), imagepromotion (ip), vulnerability (vuln).
    """
    kind, names = parse_resource_args(resources)
    parent = fleetname if kind.parent == "fleetname" else catalog
    _check_flags(kind, names, label_selector, field_selector, rendered, summary, summary_only,
                 last_seen, fmt)
    if kind.plural == "templateversions" and not fleetname:
        raise CliError("templateversions need --fleetname FLEET")
    client = env.client
    if len(names) == 1:
        _get_one(client, kind, names[0], parent, fmt, rendered, last_seen, summary)
        return

    params: dict = {"labelSelector": label_selector, "fieldSelector": field_selector,
                    "continue": continue_token}
    if len(names) > 1:
        params["fieldSelector"] = f"metadata.name in ({','.join(names)})"
    if summary and kind.plural == "fleets":
        params["addDevicesSummary"] = "true"
    if kind.plural == "devices" and cve_id:
        params["cveId"] = cve_id
    if with_exports:
        params["withExports"] = "true"
    if sort_by:
        params["sortBy"] = sort_by
    if order:
        params["order"] = order
    path = kind.collection(parent)

    if summary_only:
        summary_params = {k: v for k, v in params.items() if k != "continue"}
        answer = client.get_json(path, params={**summary_params, "summaryOnly": "true"})
        if fmt in ("json", "yaml"):
            output.emit(answer, fmt)
        else:
            click.echo(output.summary_table(answer.get("summary") or {}))
        return

    # Raw formats print the server's page as it came; tables and names walk all pages.
    follow = fmt in ("table", "wide", "name") and (limit == 0 or limit > MAX_PAGE)
    listing = client.list_pages(path, params, limit=limit, follow=follow,
                                api_version=kind.api_version)
    items = listing.get("items") or [] if isinstance(listing, dict) else []
    if fmt in ("json", "yaml"):
        output.emit(listing, fmt)
    elif fmt == "name":
        if items:
            click.echo(output.names(items, kind.singular))
    else:
        click.echo(output.table(kind.plural, items, wide=fmt == "wide",
                                fleet_summary=summary and kind.plural == "fleets"))
        if summary and kind.plural == "devices":
            filters = {k: v for k, v in params.items() if k != "continue"}
            total = client.get_json(path, params={**filters, "summaryOnly": "true"})
            click.echo("")
            click.echo(output.summary_table((total or {}).get("summary") or {}))
        more = (listing.get("metadata") or {}).get("continue") if not follow else None
        if more:
            click.echo(f"\nMore items: --continue {more}", err=True)


def _check_flags(kind: Kind, names, label_selector, field_selector, rendered, summary,
                 summary_only, last_seen, fmt) -> None:
    if names and (label_selector or field_selector):
        raise CliError("selectors (-l, --field-selector) cannot be combined with names")
    if names and not kind.gettable:
        raise CliError(f"{kind.plural} cannot be fetched by name; use --field-selector")
    if (rendered or last_seen) and (kind.plural != "devices" or len(names) != 1):
        flag = "--rendered" if rendered else "--last-seen"
        raise CliError(f"{flag} needs exactly one device: get device/NAME {flag}")
    if rendered and last_seen:
        raise CliError("--rendered and --last-seen cannot be combined")
    if summary_only and (kind.plural != "devices" or names):
        raise CliError("--summary-only works on the device list only")
    if summary and kind.plural not in ("devices", "fleets"):
        raise CliError("--summary works on devices and fleets only")
    if summary and names and kind.plural == "devices":
        raise CliError("--summary works on the device list only")
    if summary_only and fmt == "name":
        raise CliError("--summary-only has no names to print")


def _get_one(client, kind: Kind, name: str, parent, fmt, rendered, last_seen, summary) -> None:
    path = kind.item(name, parent)
    if rendered:
        obj = client.get_json(f"{path}/rendered")
        if obj is None:
            raise CliError(f'device "{name}" has no rendered version yet')
        output.emit(obj, "json" if fmt == "json" else "yaml")
        return
    if last_seen:
        answer = client.get_json(f"{path}/lastseen") or {"lastSeen": None}
        if fmt in ("json", "yaml"):
            output.emit(answer, fmt)
        elif fmt == "name":
            click.echo(f"{kind.singular}/{name}")
        else:
            when = answer.get("lastSeen")
            click.echo(output.render_table(["LAST SEEN", "TIME AGO"],
                                           [[when or "<never>", output.age(when)
                                             if when else "<never>"]]))
        return
    params = {"addDevicesSummary": "true"} if summary and kind.plural == "fleets" else None
    obj = client.get_json(path, params=params, api_version=kind.api_version)
    if fmt in ("json", "yaml"):
        output.emit(obj, fmt)
    elif fmt == "name":
        click.echo(output.names([obj], kind.singular))
    else:
        click.echo(output.table(kind.plural, [obj], wide=fmt == "wide",
                                fleet_summary=summary and kind.plural == "fleets"))
