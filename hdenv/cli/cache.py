"""Click commands for binary caches: `cache keygen|push|list` and `push` (registered by main).

Thin on purpose: parse, call `hdenv.exchange`, print. Results (the public
key, the listing) go to stdout; progress and per-artifact lines to stderr.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..config import Settings, load_settings
from ..store.layout import Store


def _settings(ctx: click.Context) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(store=obj.get("store"))


@click.group("cache")
def cache() -> None:
    """Binary caches: signing keys, pushing artifacts, listing a cache."""


@cache.command("keygen")
@click.argument("name")
def keygen(name: str) -> None:
    """Make an Ed25519 key pair NAME; print the public key (NAME:BASE64) for trusted-keys."""
    from ..exchange.signing import write_new_key

    path, public = write_new_key(name)
    click.echo(f"secret key written to {path} (mode 0600); trust the key below with"
               " trusted-keys = [...] in config or HDENV_TRUSTED_KEYS", err=True)
    click.echo(str(public))


@click.command("push")
@click.argument("refs", nargs=-1, required=True)
@click.option("--to", "url", required=True, metavar="URL",
              help="A directory, file://, or oci://HOST[:PORT]/REPO.")
@click.option("--key", "key_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Secret key to sign with (default: signing-key in config, or the one"
                   " key `hdenv cache keygen` made).")
@click.pass_context
def push(ctx: click.Context, refs: tuple[str, ...], url: str, key_file: str | None) -> None:
    """Sign and upload the runtime closure of each REF (and profile definitions) to URL."""
    from ..exchange.backends import open_cache
    from ..exchange.push import push as push_refs
    from ..exchange.signing import SecretKey, default_key_file
    from ..exchange.transfer import human_size

    settings = _settings(ctx)
    settings.check_jobs()  # packs `jobs` artifacts at once
    target = open_cache(url)
    target.check_writable()
    key = SecretKey.load(default_key_file(key_file or settings.signing_key))
    report = push_refs(Store(settings.store), list(refs), target, key,
                       say=lambda line: click.echo(line, err=True), jobs=settings.jobs)
    host = f", {len(report.host)} host artifact(s) not pushed" if report.host else ""
    click.echo(f"pushed {len(report.pushed)} artifact(s) ({human_size(report.bytes_sent)}"
               f" sent), {len(report.present)} already in the cache,"
               f" {len(report.profiles)} profile definition(s){host}", err=True)


cache.add_command(push)


@cache.command("list")
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of columns.")
def list_cmd(url: str, as_json: bool) -> None:
    """What the cache at URL holds: ID SIZE SIGNERS, one artifact per line, then its profiles.

    A profile's line is `profile NAME HASH N-artifacts SIGNERS` (NAME is `-`
    for one pushed by hash); `hdenv reproduce HASH --from URL` installs it.
    """
    from ..exchange.backends import open_cache
    from ..exchange.signing import envelope_name, signers
    from ..sanitize import printable

    cache = open_cache(url)
    rows: list[dict[str, Any]] = []
    for d in cache.entries():
        rows.append({"kind": "artifact", "id": str(d.get("id")), "size": d.get("archive_size"),
                     "signers": signers(d), "store_root": d.get("store_root")})
    rows.sort(key=lambda r: str(r["id"]))
    profile_rows: list[dict[str, Any]] = []
    for hash_, doc in cache.profile_entries():
        artifacts = doc["spec"].get("artifacts")
        profile_rows.append({"kind": "profile", "hash": hash_, "name": envelope_name(doc),
                             "artifacts": len(artifacts) if isinstance(artifacts, list) else 0,
                             "signers": signers(doc)})
    if as_json:
        click.echo(json.dumps(rows + profile_rows, indent=2, sort_keys=True))
        return
    for row in rows:
        click.echo(printable(f"{row['id']} {row['size']} {','.join(row['signers']) or '-'}"))
    for row in profile_rows:
        click.echo(printable(f"profile {row['name'] or '-'} {row['hash']} {row['artifacts']}"
                             f" {','.join(row['signers']) or '-'}"))
