"""Frames from an identity's plate and a timeline.

Per frame (output W x H; every step runs on every frame, so nothing but the scripted motion tells
an event frame from a background frame):

1. head pose -> the similarity that maps output pixels back onto the plate;
2. the moving AUs' displacement and shading fields (precomputed per AU on a coarse plate grid,
   step 4 px) are summed, sampled where each coarse output pixel lands, and the coarse map is
   upsampled to full resolution (the fields are smooth, the similarity is exactly linear);
3. a blink rewrites the map inside each eye box: above the moving lid edge the lid skin slides
   down over the eye (an occlusion, not a stretch), with a dark lash line at the edge;
4. `cv2.remap` of the plate, then lighting (global gain, a gradient across the frame, AU shading)
   as one multiplicative map, sensor noise from a seeded bank, and an optional JPEG round trip.

Displacements follow the skin: an AU's field is defined on the plate (the face at rest), so it
turns, scales and shifts with the head.

SynthSpot-v2 adds two distractors on the same path. Speech drives the jaw-drop and lips-part
fields (AU26, AU25) at the burst's opening. An out-of-plane head turn (yaw, pitch) becomes one
more displacement field on the plate: the head is modelled as a depth map (a paraboloid cap over
the landmarks' extent plus a nose bump), rotated about a point behind the face and projected in
perspective from about seven IODs away, so the far side compresses, the near side expands and the
nose moves against the cheeks; the field fades out below the chin and outside the head so the
background and the torso stay. The turn's map is inverted by two fixed-point steps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.errors import SourceError
from stream.synth.actions import ACTION_UNITS, EYE_LIDS, FaceFrame, au_fields
from stream.synth.identity import Identity
from stream.synth.timeline import FrameState, Timeline

log = logging.getLogger(__name__)

#: video codecs tried in order (FourCC, mp4 container); pip builds of OpenCV usually lack H.264.
CODECS = ("avc1", "mp4v")
_NOISE_BANK = 8  # noise frames kept; each frame picks one at a random offset
_NOISE_PAD = 32


@dataclass(frozen=True)
class _Eye:
    centre: np.ndarray  # (2,) plate px
    u_up: np.ndarray  # (N,) sorted positions along the eye line (plate px from the centre)
    v_up: np.ndarray  # (N,) upper lid depth at u_up
    u_lo: np.ndarray
    v_lo: np.ndarray
    u_range: tuple[float, float]
    h_max: float  # largest lid opening
    box: np.ndarray  # (4, 2) plate corners of the region a blink changes


class Renderer:
    """Renders frames of one identity.

    Args:
        identity: the subject (plate + landmarks).
        noise_sigma: Gaussian sensor noise, grey levels (0: none).
        jpeg_quality: JPEG round trip per frame (0: none).
        seed: seeds the noise bank and the per-frame noise choice.
        step: coarse grid step in pixels for the displacement fields.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        noise_sigma: float = 0.0,
        jpeg_quality: int = 0,
        seed: int = 0,
        step: int = 4,
    ) -> None:
        self.identity = identity
        self.plate = identity.plate
        self.width, self.height = identity.frame_size
        self.step = step
        self.seed = seed
        self.jpeg_quality = int(jpeg_quality)
        lm = identity.landmarks.astype(np.float64)
        self.face = FaceFrame.from_landmarks(lm)
        self.centre = lm.mean(0)
        # a fixed quarter-pixel offset: every frame is resampled between pixels (the same
        # interpolation blur with or without motion), so blur never marks an event
        self.origin = np.array(identity.origin, np.float64) + 0.25
        # coarse output grid: sample j sits at step * j + (step - 1) / 2, where cv2.resize (half-pixel
        # centres) puts it when upsampling by `step`
        self._wc, self._hc = math.ceil(self.width / step), math.ceil(self.height / step)
        off = (step - 1) / 2
        gx, gy = np.meshgrid(np.arange(self._wc) * step + off, np.arange(self._hc) * step + off)
        self._coarse = np.dstack([gx, gy]).astype(np.float32)  # (Hc, Wc, 2) output px
        # coarse plate grid for the AU fields: sample j at plate px step * j
        ph, pw = self.plate.shape[:2]
        self._pxs = np.arange(0, pw + step, step, dtype=np.float64)
        self._pys = np.arange(0, ph + step, step, dtype=np.float64)
        self._fields: dict[tuple[str, str], np.ndarray] = {}  # (Hp, Wp, 3): dx, dy, shade
        self._head: tuple[np.ndarray, ...] | None = None  # depth model for turns (lazy)
        self._eyes = [self._eye(side) for side in ("r", "l")]
        # lighting gradient coordinate: -1..1 across the frame along the gradient's direction
        self._grad_x = (gx - self.width / 2) / (self.width / 2)
        self._grad_y = (gy - self.height / 2) / (self.width / 2)
        self.noise_sigma = float(noise_sigma)
        self._noise: list[np.ndarray] = []
        if self.noise_sigma > 0:
            rng = np.random.default_rng([seed, 11])
            shape = (self.height + _NOISE_PAD, self.width + _NOISE_PAD, 3)
            self._noise = [
                np.rint(rng.standard_normal(shape, np.float32) * self.noise_sigma).astype(np.int16)
                for _ in range(_NOISE_BANK)
            ]

    @classmethod
    def for_timeline(cls, identity: Identity, timeline: Timeline, *, step: int = 4) -> Renderer:
        """A renderer with the timeline's noise and JPEG settings, seeded by the timeline."""
        p = timeline.params
        return cls(
            identity, noise_sigma=p.noise_sigma, jpeg_quality=p.jpeg_quality, seed=timeline.seed, step=step
        )

    # -- geometry ---------------------------------------------------------------------------------
    def _eye(self, side: str) -> _Eye:
        upper_idx, lower_idx = EYE_LIDS[side]
        lm = self.identity.landmarks.astype(np.float64)
        ex, ey = self.face.ex, self.face.ey
        centre = (lm[upper_idx[0]] + lm[upper_idx[-1]]) / 2
        up, lo = lm[list(upper_idx)] - centre, lm[list(lower_idx)] - centre
        u_up, v_up = up @ ex, up @ ey
        u_lo, v_lo = lo @ ex, lo @ ey
        o_up, o_lo = np.argsort(u_up), np.argsort(u_lo)
        u_min, u_max = float(min(u_up.min(), u_lo.min())), float(max(u_up.max(), u_lo.max()))
        us = np.linspace(u_min, u_max, 32)
        h = np.interp(us, u_lo[o_lo], v_lo[o_lo]) - np.interp(us, u_up[o_up], v_up[o_up])
        h_max = max(float(h.max()), 1.0)
        top, bottom = float(v_up.min()) - 3.0 * h_max, float(v_lo.max()) + 1.0 * h_max
        left, right = u_min - 0.5 * h_max, u_max + 0.5 * h_max
        box = np.array([centre + a * ex + b * ey for a in (left, right) for b in (top, bottom)])
        return _Eye(centre, u_up[o_up], v_up[o_up], u_lo[o_lo], v_lo[o_lo], (u_min, u_max), h_max, box)

    def inverse_pose(self, pose: tuple[float, float, float, float]) -> np.ndarray:
        """(2, 3) map output px -> plate px for a head pose (tx, ty px@100IOD, roll deg, log-scale)."""
        tx, ty, roll, log_scale = pose
        t = np.array([tx, ty]) * self.face.iod / 100.0
        s = math.exp(log_scale)
        a = math.radians(roll)
        rinv = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]) / s  # R(-a) / s
        m = np.empty((2, 3))
        m[:, :2] = rinv
        m[:, 2] = rinv @ (self.origin - self.centre - t) + self.centre
        return m

    def _field(self, au: str, side: str) -> np.ndarray:
        key = (au, side)
        if key not in self._fields:
            disp, shade = au_fields(ACTION_UNITS[au], side, self.identity.landmarks, self._pxs, self._pys)
            self._fields[key] = np.dstack([disp, shade]).astype(np.float32)
        return self._fields[key]

    def _head_model(self) -> tuple[np.ndarray, ...]:
        """Per coarse plate sample: face coordinates (u, v) px, depth z px, and the weight of the
        head (1 on the face, 0 on the background and the torso)."""
        if self._head is None:
            lm = self.identity.landmarks.astype(np.float64)
            ex, ey, iod = self.face.ex, self.face.ey, self.face.iod
            c = self.centre
            lu, lv = (lm - c) @ ex, (lm - c) @ ey
            cu, cv_ = (lu.max() + lu.min()) / 2, (lv.max() + lv.min()) / 2
            a, b = 0.55 * (lu.max() - lu.min()), 0.55 * (lv.max() - lv.min())
            gx, gy = np.meshgrid(self._pxs, self._pys)
            u = (gx - c[0]) * ex[0] + (gy - c[1]) * ex[1]
            v = (gx - c[0]) * ey[0] + (gy - c[1]) * ey[1]
            r2 = ((u - cu) / a) ** 2 + ((v - cv_) / b) ** 2
            z = 0.7 * iod * np.clip(1.0 - r2, 0.0, None)  # the head's curvature
            nose = (lm[1] - c) @ ex, (lm[1] - c) @ ey
            z += 0.3 * iod * np.exp(-((u - nose[0]) ** 2 + (v - nose[1]) ** 2) / (2 * (0.22 * iod) ** 2))
            x = np.clip(2.0 - r2, 0.0, 1.0)  # fades out from the head's edge to sqrt(2) times it
            w = x * x * (3 - 2 * x)
            self._head = (u, v, z, w)
        return self._head

    def turn_field(self, yaw: float, pitch: float) -> np.ndarray:
        """(Hp, Wp, 3) forward displacement (dx, dy, 0) on the coarse plate grid of a head turned
        by (yaw, pitch) degrees: perspective projection of the rotated depth model."""
        u, v, z, w = self._head_model()
        iod = self.face.iod
        pivot, dist = 0.6 * iod, 7.0 * iod  # rotation centre behind the face; camera distance
        ty, tp = math.radians(yaw), math.radians(pitch)
        zz = z + pivot
        x1 = u * math.cos(ty) + zz * math.sin(ty)
        z1 = -u * math.sin(ty) + zz * math.cos(ty)
        y2 = v * math.cos(tp) + z1 * math.sin(tp)
        z2 = -v * math.sin(tp) + z1 * math.cos(tp) - pivot
        k = (dist - z) / (dist - z2)  # perspective, relative to the rest pose
        du, dv = w * (x1 * k - u), w * (y2 * k - v)
        ex, ey = self.face.ex, self.face.ey
        out = np.zeros((*u.shape, 3), np.float32)
        out[..., 0] = du * ex[0] + dv * ey[0]
        out[..., 1] = du * ex[1] + dv * ey[1]
        return out

    # -- rendering --------------------------------------------------------------------------------
    def render(self, state: FrameState) -> np.ndarray:
        """(H, W, 3) uint8 BGR frame for one timeline state."""
        minv = self.inverse_pose(state.pose)
        q = cv2.transform(self._coarse, minv.astype(np.float32))  # (Hc, Wc, 2) plate px
        # AU displacement + shading: sum on the plate's coarse grid, sample where q lands
        total = np.zeros((1, 1, 3), np.float32)  # no AU: same code path, nothing moves
        for au, side, amp in state.aus:
            total = total + self._field(au, side) * self._scale(amp)
        if state.speech > 0:  # speech: the jaw drops and the lips part, as the syllable opens
            total = total + self._field("AU26", "both") * self._scale(state.speech)
            total = total + self._field("AU25", "both") * self._scale(0.6 * state.speech)
        turned = state.turn[0] != 0.0 or state.turn[1] != 0.0
        if turned:
            total = total + self.turn_field(*state.turn)
        sampled = cv2.remap(total, q / self.step, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if turned:  # the turn moves the skin far: two fixed-point steps of p = q - d(p)
            for _ in range(2):
                p = q - sampled[..., :2]
                sampled = cv2.remap(
                    total, p / self.step, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
                )
        coarse_map = q - sampled[..., :2]
        shade = np.clip(sampled[..., 2], 0.0, 0.6)
        full = cv2.resize(
            coarse_map, (self._wc * self.step, self._hc * self.step), interpolation=cv2.INTER_LINEAR
        )
        full = full[: self.height, : self.width]
        shift = None
        if state.blink > 0 and turned:  # the eyes' boxes follow the turned head
            shift = [self._sample(total, e.centre) for e in self._eyes]
        lash = self._blink(full, state.blink, minv, shift) if state.blink > 0 else None
        img = cv2.remap(self.plate, full, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # lighting: gain x gradient x AU shading, one multiplicative map
        c, s = math.cos(state.gradient_angle), math.sin(state.gradient_angle)
        gain = math.exp(state.log_gain) * (1.0 + state.gradient * (c * self._grad_x + s * self._grad_y))
        gain = (gain * (1.0 - shade)).astype(np.float32)
        gain_full = cv2.resize(
            gain, (self._wc * self.step, self._hc * self.step), interpolation=cv2.INTER_LINEAR
        )
        gain_full = gain_full[: self.height, : self.width]
        if lash is not None:
            (y0, y1, x0, x1), dark = lash
            gain_full[y0:y1, x0:x1] *= 1.0 - dark
        img = cv2.multiply(img, cv2.merge([gain_full, gain_full, gain_full]), dtype=cv2.CV_8U)
        if self._noise:
            rng = np.random.default_rng([self.seed, 12, state.index])
            k, oy, ox = rng.integers(_NOISE_BANK), rng.integers(_NOISE_PAD), rng.integers(_NOISE_PAD)
            noise = self._noise[k][oy : oy + self.height, ox : ox + self.width]
            img = cv2.add(img, noise, dtype=cv2.CV_8U)
        if self.jpeg_quality > 0:
            _, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        return img

    def _scale(self, amp: float) -> np.ndarray:
        """(3,) per-channel scale of an AU field at `amp` px@100IOD: displacement in plate px;
        shading deepens with the amplitude up to 5 px@100IOD, so micro-movements barely shade."""
        px = amp * self.face.iod * self.identity.action_scale / 100.0
        return np.array([px, px, min(amp / 5.0, 1.0)], np.float32)

    def _sample(self, field: np.ndarray, point: np.ndarray) -> np.ndarray:
        """(2,) displacement of a coarse plate field at a plate point (nearest sample)."""
        if field.ndim < 3 or field.shape[0] == 1:
            return np.zeros(2)
        j = int(np.clip(round(point[1] / self.step), 0, field.shape[0] - 1))
        i = int(np.clip(round(point[0] / self.step), 0, field.shape[1] - 1))
        return field[j, i, :2].astype(np.float64)

    def _blink(
        self,
        full: np.ndarray,
        closure: float,
        minv: np.ndarray,
        eye_shift: list[np.ndarray] | None = None,
    ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Close the upper lids to `closure` by rewriting `full` (output px -> plate px) in place.

        `eye_shift` moves each eye's box (plate px) where a head turn carried the eye.
        Returns the box and (h, w) darkening of the lash line for the lighting map.
        """
        fwd = cv2.invertAffineTransform(minv)  # plate -> output
        ex, ey = self.face.ex, self.face.ey
        dark_parts = []
        for k, eye in enumerate(self._eyes):
            box = eye.box if eye_shift is None else eye.box + eye_shift[k]
            corners = box @ fwd[:, :2].T + fwd[:, 2]
            x0, y0 = np.floor(corners.min(0)).astype(int)
            x1, y1 = np.ceil(corners.max(0)).astype(int) + 1
            x0, y0 = max(x0, 0), max(y0, 0)
            x1, y1 = min(x1, self.width), min(y1, self.height)
            if x1 <= x0 or y1 <= y0:
                continue
            q = full[y0:y1, x0:x1].astype(np.float64)  # (h, w, 2) plate px
            rel = q - eye.centre
            u, v = rel @ ex, rel @ ey
            upper = np.interp(u, eye.u_up, eye.v_up)
            lower = np.interp(u, eye.u_lo, eye.v_lo)
            inside = (u > eye.u_range[0]) & (u < eye.u_range[1])
            h = np.where(inside, np.maximum(lower - upper, 0.0), 0.0)
            edge = upper + closure * h
            lam = 0.9 * eye.h_max  # the skin above the lid follows less the higher it is
            follow = np.where(v >= upper, 1.0, np.exp(-(((upper - v) / lam) ** 2)))
            shift = np.where(v <= edge, closure * h * follow, 0.0)
            full[y0:y1, x0:x1] = (q - shift[..., None] * ey).astype(np.float32)
            width = 0.12 * eye.h_max + 0.5
            taper = np.sqrt(np.clip(h / eye.h_max, 0.0, 1.0))
            dark = 0.5 * closure**0.7 * taper * np.exp(-(((v - edge) / width) ** 2))
            dark_parts.append(((y0, y1, x0, x1), dark))
        if not dark_parts:
            return None
        # one box covering both eyes (the darkening is 0 away from the lid edges)
        y0 = min(b[0] for b, _ in dark_parts)
        y1 = max(b[1] for b, _ in dark_parts)
        x0 = min(b[2] for b, _ in dark_parts)
        x1 = max(b[3] for b, _ in dark_parts)
        dark = np.zeros((y1 - y0, x1 - x0), np.float32)
        for (a0, a1, b0, b1), d in dark_parts:
            region = dark[a0 - y0 : a1 - y0, b0 - x0 : b1 - x0]
            np.maximum(region, d.astype(np.float32), out=region)
        return (y0, y1, x0, x1), dark


def render_frames(identity: Identity, timeline: Timeline, *, start: int = 0) -> Iterator[np.ndarray]:
    """Every frame of a finite timeline from `start` (BGR, the identity's frame size)."""
    if timeline.n_frames is None:
        raise ValueError("render_frames needs a finite timeline")
    renderer = Renderer.for_timeline(identity, timeline)
    for n in range(start, timeline.n_frames):
        yield renderer.render(timeline.state(n))


@dataclass(frozen=True)
class RenderReport:
    """What writing one video took.

    Attributes:
        path: the video file.
        frames: frames written.
        codec: FourCC used.
        render_s: seconds spent rendering frames (timeline states + images).
        encode_s: seconds spent encoding and writing.
    """

    path: str
    frames: int
    codec: str
    render_s: float
    encode_s: float


def open_writer(
    path: Path, fps: float, size: tuple[int, int], codecs: tuple[str, ...] = CODECS
) -> tuple[cv2.VideoWriter, str]:
    """An OpenCV writer with the first codec that opens.

    Raises:
        SourceError: no codec in `codecs` can write `path`.
    """
    for fourcc in codecs:
        # a codec this OpenCV build lacks makes FFmpeg log errors: probe quietly
        previous = cv2.getLogLevel()
        cv2.setLogLevel(0)  # silent
        try:
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
        finally:
            cv2.setLogLevel(previous)
        if writer.isOpened():
            return writer, fourcc
        writer.release()
    raise SourceError(str(path), f"OpenCV cannot write video with any of the codecs {', '.join(codecs)}")


def write_video(
    identity: Identity, timeline: Timeline, path: str | Path, *, codecs: tuple[str, ...] = CODECS
) -> RenderReport:
    """Render a finite timeline into a video file (mp4)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer, codec = open_writer(path, timeline.fps, identity.frame_size, codecs)
    renderer = Renderer.for_timeline(identity, timeline)
    render_ns = encode_ns = 0
    try:
        for n in range(timeline.n_frames or 0):
            t0 = time.perf_counter_ns()
            frame = renderer.render(timeline.state(n))
            t1 = time.perf_counter_ns()
            writer.write(frame)
            render_ns += t1 - t0
            encode_ns += time.perf_counter_ns() - t1
    finally:
        writer.release()
    return RenderReport(str(path), timeline.n_frames or 0, codec, render_ns / 1e9, encode_ns / 1e9)
