"""Serve an H.264 .mp4/.mov file over RTSP with GStreamer's RTSP server (test helper).

Run it with the SYSTEM python (Debian's python3-gi and gir1.2-gst-rtsp-server-1.0), not the
project's virtualenv:

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --mount /clip --file video.mp4 --loops 20

The stream is passed through without re-encoding
(``filesrc ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96``). ``--loops N`` plays the file N
times back to back in one session: the script first writes a looped copy of the file
(GStreamer's ``concat`` + ``mp4mux``, no re-encoding) into ``--cache``, so a short clip makes a
long stream. Every client gets its own pipeline starting at the beginning of the file.

When the server listens it prints one line ``ready rtsp://HOST:PORT/MOUNT`` to stdout (flushed).
SIGTERM or SIGINT stop it cleanly; SIGKILL is what tests use to simulate a dropped server.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

log = logging.getLogger("rtsp_server")


def build_looped_file(file: Path, loops: int, cache: Path) -> Path:
    """Write (once) an .mp4 holding the file's video track ``loops`` times back to back.

    GStreamer's ``concat`` shifts each copy's timestamps after the previous one and ``mp4mux``
    writes a plain file; nothing is re-encoded, so this takes milliseconds. Looping inside the
    RTSP media pipeline itself does not work (the server cannot preroll a ``concat`` whose later
    inputs are idle), hence the file.

    Args:
        file: an .mp4/.mov file with an H.264 video track.
        loops: how many copies (>= 2).
        cache: folder where the looped file is kept and reused by later runs.

    Returns:
        The path of the looped file.
    """
    target = cache / f"{file.stem}.x{loops}.mp4"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    location = str(file).replace('"', '\\"')
    # The demuxer's video pad is named explicitly so that an audio track is never linked.
    parts = [f'concat name=cat ! h264parse ! mp4mux ! filesink location="{partial}"']
    parts += [
        f'filesrc location="{location}" ! qtdemux name=d{i} d{i}.video_0 ! queue ! cat.' for i in range(loops)
    ]
    pipeline = Gst.parse_launch(" ".join(parts))
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type != Gst.MessageType.EOS:
        detail = msg.parse_error()[0].message if msg is not None else "timed out"
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{file}: cannot build the looped copy: {detail}")
    partial.replace(target)  # atomic, so a concurrent run never serves a half-written file
    return target


def build_launch(file: Path) -> str:
    """The gst-launch description of one client's media pipeline (payloader named ``pay0``)."""
    location = str(file).replace('"', '\\"')
    return f'( filesrc location="{location}" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 )'


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the server and run the GLib main loop until a signal arrives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    parser.add_argument("--mount", default="/clip", help="mount point, e.g. /clip")
    parser.add_argument("--file", type=Path, required=True, help="H.264 .mp4/.mov file to serve")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--loops", type=int, default=1, help="play the file this many times per session")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "mespot-rtsp-server",
        help="folder for the looped copy of the file (reused across runs)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="rtsp_server: %(message)s", stream=sys.stderr)

    if not args.file.is_file():
        log.error("%s: no such file", args.file)
        return 2
    if args.loops < 1:
        log.error("--loops must be >= 1, got %d", args.loops)
        return 2
    mount = args.mount if args.mount.startswith("/") else "/" + args.mount

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    served = args.file.resolve()
    if args.loops > 1:
        try:
            served = build_looped_file(served, args.loops, args.cache)
        except RuntimeError as exc:
            log.error("%s", exc)
            return 1
    factory.set_launch(build_launch(served))
    factory.set_shared(False)  # each client starts at the beginning of the file
    server.get_mount_points().add_factory(mount, factory)

    loop = GLib.MainLoop()
    # attach() binds the listening socket; 0 means it failed (e.g. the port is taken).
    if server.attach(None) == 0:
        log.error("cannot listen on %s:%d", args.host, args.port)
        return 1
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    print(f"ready rtsp://{args.host}:{server.get_bound_port()}{mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
