"""`hdenv pack`: a profile as a container image (registered by main). Thin: parse, call, print.

The image's path (or pushed reference) and manifest digest go to stdout,
one line, for scripts; progress goes to stderr.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..config import load_settings
from ..store.layout import Store


@click.command("pack")
@click.argument("ref")
@click.option("--format", "fmt", default="oci", show_default=True, metavar="FORMAT",
              help="oci (an OCI layout directory), docker-archive, squashfs or tar.")
@click.option("-o", "--output", type=click.Path(), metavar="PATH",
              help="Where to write the image (must not exist).")
@click.option("--to", "to", metavar="oci://HOST[:PORT]/REPO[:TAG]",
              help="Push to a registry instead of writing a file.")
@click.option("--root", metavar="DIR", help="Relocate the store to DIR inside the image.")
@click.option("--base", type=click.Path(exists=False), metavar="IMAGE",
              help="Put the profile on top of this image (an OCI layout or docker archive).")
@click.option("--entrypoint", metavar="CMD", help="The image's entrypoint (a command line).")
@click.option("--tag", default="latest", show_default=True,
              help="Tag of an OCI layout's image and a docker archive's name.")
@click.option("--sbom", metavar="spdx|cyclonedx",
              help="Also write an SPDX 2.3 or CycloneDX 1.5 JSON SBOM (beside and inside).")
@click.pass_context
def pack(ctx: click.Context, ref: str, fmt: str, output: str | None, to: str | None,
         root: str | None, base: str | None, entrypoint: str | None, tag: str,
         sbom: str | None) -> None:
    """Make a container image of profile REF: OCI, docker archive, SquashFS or tar.

    One reproducible layer per artifact (same profile, same digest), the host
    files and system libraries its programs load, PATH and the profile's env
    in the config, provenance labels. Ctrl-C leaves nothing behind.
    """
    from ..build.processes import interruptible
    from ..containers.pack import PackOptions, check_options
    from ..containers.pack import pack as pack_image

    opts = PackOptions(format=fmt, output=Path(output).absolute() if output else None, to=to,
                       root=root, base=Path(base) if base else None, entrypoint=entrypoint,
                       tag=tag, sbom=sbom)
    check_options(opts)
    obj = ctx.find_root().obj or {}
    settings = load_settings(store=obj.get("store"))
    store = Store(settings.store, settings.upstreams)
    with interruptible():
        result = pack_image(store, ref, opts, say=lambda line: click.echo(line, err=True))
    for lib in result.missing:
        click.echo(f"warning: no {lib} on this machine: a program of the image that needs it"
                   " will not start", err=True)
    if result.sbom_path is not None:
        click.echo(f"SBOM written to {result.sbom_path}", err=True)
    click.echo(f"{result.output} {result.image.manifest.digest}")
