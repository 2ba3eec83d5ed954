"""Procedural face drawing: one RGB face from identity, action units, pose and photometry.

All geometry is given in a 128-unit *design frame* (face centre at (64, 64), image y down).
The face is drawn antialiased with sub-pixel coordinates on an RGBA layer of 128 px (256 px
for outputs above 128 px), enlarged ``ZOOM`` times for aligned-crop framing (brows to mouth
fill the frame; forehead top, ears and chin edge are cropped), warped by a similarity
transform (rotation, scale, shift),
composited over a busy background, lit, blurred and downscaled with area interpolation.
Every action unit (AU) is a visible geometric change; see the ``_draw_*`` functions.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

AUS = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17, 20, 23, 24, 25, 26)
OCCLUDERS = ("none", "glasses", "hand", "patch")
DESIGN = 128  # size of the design frame
CX, CY = 64.0, 64.0  # face centre in the design frame
ZOOM = 1.3  # aligned-crop framing: the face is enlarged about (CX, CY + ZOOM_DY) ...
ZOOM_DY = 4.0  # ... so brows to mouth fill the frame and the chin/forehead edges are cropped
_SHIFT = 4  # cv2 fractional bits: coordinates are multiplied by 2**_SHIFT
_T = np.linspace(0.0, 1.0, 13)[:, None]  # Bezier parameter samples, (13, 1)
_B = ((1 - _T) ** 2, 2 * (1 - _T) * _T, _T**2)  # quadratic Bernstein weights, 3 x (13, 1)
_BG_CONTRAST = 0.5  # clutter deviations from the background's mean colour are scaled by this
_DARK = np.array([45.0, 25.0, 20.0])  # wrinkle / line colour that skin is mixed towards

_SKIN_LIGHT = np.array([240.0, 205.0, 180.0])
_SKIN_DARK = np.array([90.0, 55.0, 38.0])
_HAIR = ((25, 20, 18), (60, 40, 25), (105, 70, 40), (200, 165, 100), (140, 60, 30), (150, 150, 150))
_IRIS = ((70, 45, 25), (40, 25, 15), (70, 110, 160), (80, 120, 70), (110, 90, 50))


@dataclass(frozen=True)
class Identity:
    """What stays fixed for one person; lengths are design-frame units (face half-width ~48)."""

    face_w: float  # half-width of the face ellipse, 44..52
    face_h: float  # half-height of the face ellipse, 56..64
    skin: tuple[float, float, float]  # RGB 0..255, light to dark
    hair: tuple[float, float, float]  # RGB 0..255
    hair_style: int  # 0 bald, 1 cap, 2 cap with fringe
    eye_sep: float  # half the distance between eye centres, 19..24
    eye_w: float  # eye half-width, 8.5..11.5
    eye_h: float  # eye half-height, 3.5..5
    iris: tuple[float, float, float]  # RGB 0..255
    brow_t: float  # brow thickness, 2..4.5
    brow_gap: float  # brow height above the eye centre, 9..13
    nose_w: float  # half-width of the nose wings, 6..10
    nose_len: float  # nose tip below the face centre, 12..18
    mouth_w: float  # half-width of the neutral mouth, 13..18
    mouth_y: float  # mouth centre below the face centre, 28..34
    lip_t: float  # lip thickness, 2..4


@dataclass(frozen=True)
class FaceParams:
    """Everything ``render_face`` needs; the picture is a pure function of these values."""

    identity: Identity
    aus: np.ndarray  # (len(AUS),) true intensities in [0, 1], in ``AUS`` order
    lateral: int = 0  # 0: AU12/AU14 on both sides; -1 / +1: only the image-left / -right half
    rotation: float = 0.0  # in-plane rotation, degrees (counter-clockwise)
    scale: float = 1.0  # zoom about the frame centre
    shift_x: float = 0.0  # design units
    shift_y: float = 0.0  # design units
    light: float = 0.0  # lighting gradient amplitude, -0.5..0.5 (fraction of brightness)
    light_angle: float = 0.0  # gradient direction, radians
    contrast: float = 1.0  # multiplies deviations from mid-grey
    brightness: float = 0.0  # added to 0..255 pixel values
    blur: float = 0.0  # Gaussian sigma in design units (0 = none)
    noise: float = 0.0  # pixel-noise sigma in 0..255 units at the output size
    occluder: str = "none"  # one of OCCLUDERS
    detail_seed: int = 0  # seeds background clutter, occluder placement and pixel noise


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one person's face shape, colours and feature sizes."""
    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * _SKIN_LIGHT + tone * _SKIN_DARK
    return Identity(
        face_w=rng.uniform(44, 52), face_h=rng.uniform(56, 64),
        skin=tuple(float(c) for c in skin),
        hair=tuple(float(c) for c in _HAIR[rng.integers(len(_HAIR))]),
        hair_style=int(rng.choice(3, p=[0.1, 0.5, 0.4])),
        eye_sep=rng.uniform(19, 24), eye_w=rng.uniform(9.5, 12), eye_h=rng.uniform(4, 5.5),
        iris=tuple(float(c) for c in _IRIS[rng.integers(len(_IRIS))]),
        brow_t=rng.uniform(3, 5.5), brow_gap=rng.uniform(9, 13),
        nose_w=rng.uniform(6, 10), nose_len=rng.uniform(12, 18),
        mouth_w=rng.uniform(16, 21), mouth_y=rng.uniform(28, 33), lip_t=rng.uniform(2.5, 4.5),
    )


class _Pen:
    """Antialiased sub-pixel drawing in design units on an RGBA (or RGB) image."""

    def __init__(self, img: np.ndarray, k: float):
        self.img, self.k, self.f = img, k, k * (1 << _SHIFT)

    def _c(self, color) -> tuple:
        c = tuple(float(v) for v in color)
        return c + (255.0,) if self.img.shape[2] == 4 else c

    def _p(self, pts: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(pts) * self.f).astype(np.int32)

    def line(self, pts: np.ndarray, color, t: float = 1.0) -> None:
        th = max(1, int(round(t * self.k)))  # noqa: RUF046 (numpy scalars: cv2 wants int)
        cv2.polylines(self.img, [self._p(pts)], False, self._c(color), th, cv2.LINE_AA, _SHIFT)

    def fill(self, pts: np.ndarray, color) -> None:
        cv2.fillPoly(self.img, [self._p(pts)], self._c(color), cv2.LINE_AA, _SHIFT)

    def ellipse(self, c, axes, color, angle: float = 0.0) -> None:
        ax = tuple(int(round(max(a, 0.3) * self.f)) for a in axes)  # noqa: RUF046 (numpy scalars)
        cv2.ellipse(self.img, tuple(self._p(c)), ax, angle, 0, 360, self._c(color), -1,
                    cv2.LINE_AA, _SHIFT)


def _bezier(p0, p1, p2) -> np.ndarray:
    """Quadratic Bezier sampled at 13 points, (13, 2)."""
    return _B[0] * np.asarray(p0) + _B[1] * np.asarray(p1) + _B[2] * np.asarray(p2)


def _through(p0, mid, p2) -> np.ndarray:
    """Quadratic Bezier from p0 to p2 that passes through ``mid`` at t = 0.5, (13, 2)."""
    ctrl = 2 * np.asarray(mid, float) - 0.5 * (np.asarray(p0, float) + np.asarray(p2, float))
    return _bezier(p0, ctrl, p2)


def _shade(skin: np.ndarray, alpha: float) -> np.ndarray:
    """Skin mixed towards the line colour by ``alpha`` in [0, 1]."""
    return (1 - alpha) * skin + alpha * _DARK


def _head(pen: _Pen, idn: Identity, skin: np.ndarray, a: dict) -> None:
    """Neck, hair, ears and the face outline; AU26 lengthens the face (jaw drop)."""
    hw, hh = idn.face_w, idn.face_h
    hair = np.array(idn.hair)
    pen.fill(np.array([[CX - 0.5 * hw, CY + 0.4 * hh], [CX + 0.5 * hw, CY + 0.4 * hh],
                       [CX + 0.6 * hw, DESIGN + 8], [CX - 0.6 * hw, DESIGN + 8]]), skin * 0.8)
    if idn.hair_style:
        pen.ellipse((CX, CY - 0.2 * hh), (hw + 6, 0.9 * hh), hair)
    for s in (-1, 1):
        pen.ellipse((CX + s * (hw - 1), CY - 6), (6, 11), skin * 0.9)
    th = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    sin = np.sin(th)
    ry = np.where(sin > 0, hh + 6 * a[26], hh)
    rx = hw * np.where(sin > 0, 1 - 0.12 * sin, 1.0)
    pen.fill(np.stack([CX + rx * np.cos(th), CY + ry * sin], 1), skin)


def _hair_cap(pen: _Pen, idn: Identity) -> None:
    """Hair over the top of the head, with a high hairline or a fringe."""
    if idn.hair_style:
        arc = np.linspace(np.pi + 0.3, 2 * np.pi - 0.3, 20)
        top = np.stack([CX + (idn.face_w + 1.5) * np.cos(arc),
                        CY + (idn.face_h + 1.5) * np.sin(arc)], 1)
        depth = 0.8 if idn.hair_style == 2 else 1.0
        hairline = _bezier(top[-1], (CX, CY - depth * idn.face_h), top[0])
        pen.fill(np.concatenate([top, hairline]), idn.hair)


def _brows(pen: _Pen, idn: Identity, a: dict, ey: float) -> None:
    """AU1 raises the inner brow, AU2 the outer brow, AU4 lowers and pulls the brows
    together, AU9 lowers them."""
    by = ey - idn.brow_gap
    color = 0.5 * np.array(idn.hair) + 0.5 * _DARK
    for s in (-1, 1):
        inner = (CX + s * (8 - 5 * a[4]), by + 9 * a[4] - 10 * a[1] + 3 * a[9])
        mid = (CX + s * 19, by - 3 - 3 * a[1] - 6 * a[2] + 3.5 * a[4] + 2.5 * a[9])
        outer = (CX + s * (idn.eye_sep + idn.eye_w + 2), by + 1 - 10 * a[2] + a[4] + a[9])
        c = _through(inner, mid, outer)
        w = idn.brow_t * (1.2 + 0.5 * a[4] - 0.6 * _T[:, 0])[:, None] / 2
        pen.fill(np.concatenate([c - [0, 1] * w, (c + [0, 1] * w)[::-1]]), color)


def _forehead(pen: _Pen, idn: Identity, skin: np.ndarray, a: dict, ey: float) -> None:
    """Forehead wrinkles when AU1 and AU2 are strong; glabella furrows with AU4."""
    by = ey - idn.brow_gap
    wrinkle = min(1.0, max(0.0, (a[1] + a[2]) / 2 - 0.25) / 0.5)
    if wrinkle > 0.05:
        for j, dy in enumerate((10, 15, 20)):
            half = 10 + 12 * a[2] - 3 * j
            y = by - dy - 2 * a[1]
            pen.line(_through((CX - half, y + 1.5), (CX, y), (CX + half, y + 1.5)),
                     _shade(skin, 0.6 * wrinkle), 1.6)
    if a[4] > 0.15:
        for s in (-1, 1):
            x = CX + s * (3.5 - a[4])
            pen.line(np.array([[x, by - 3], [x + s * 0.8, by + 6]]), _shade(skin, 0.75 * a[4]), 1.6)


def _eyes(pen: _Pen, idn: Identity, skin: np.ndarray, a: dict, ey: float) -> None:
    """AU5 opens the upper lid (sclera above the iris), AU6 and AU7 narrow the eye; AU7 adds a
    lower-lid bulge, AU6 a cheek arc and crow's feet."""
    eh = idn.eye_h
    hu = eh * (1 + 1.2 * a[5] - 0.6 * a[7] - 0.35 * a[6])
    hl = eh * 0.75 * (1 + 0.3 * a[5] - 0.5 * a[7] - 0.5 * a[6])
    line = _shade(skin, 0.85)
    for s in (-1, 1):
        ex = CX + s * idn.eye_sep
        cin, cout = (ex - s * idn.eye_w, ey), (ex + s * idn.eye_w, ey - 1)
        upper = _through(cin, (ex, ey - hu), cout)
        lower = _through(cin, (ex, ey + hl), cout)
        pen.fill(np.concatenate([upper, lower[::-1]]), (235, 232, 225))
        ri = 1.05 * eh
        pen.ellipse((ex, ey + 0.2), (ri, ri), idn.iris)
        pen.ellipse((ex, ey + 0.2), (0.45 * ri, 0.45 * ri), (15, 12, 12))
        top, bottom = ey - 2.2 * eh - 3, ey + 1.6 * eh + 2
        pen.fill(np.concatenate([upper, [[cout[0], top], [cin[0], top]]]), skin)
        pen.fill(np.concatenate([lower, [[cout[0], bottom], [cin[0], bottom]]]), skin)
        pen.line(upper, line, 1.6)
        pen.line(lower, _shade(skin, 0.45), 1.0)
        if a[5] < 0.7:
            crease = _through(cin, (ex, ey - hu - 3), cout)
            pen.line(crease[2:-2], _shade(skin, 0.35 * (1 - a[5])), 1.0)
        if a[7] > 0.15:
            bulge = _through((ex - s * 0.7 * idn.eye_w, ey + hl + 2),
                             (ex, ey + hl + 3.2), (ex + s * 0.8 * idn.eye_w, ey + hl + 1.5))
            pen.line(bulge, _shade(skin, 0.65 * a[7]), 1.6)
        if a[6] > 0.15:
            cheek = _through((ex - s * 0.5 * idn.eye_w, ey + eh + 8),
                             (ex + s * 0.2 * idn.eye_w, ey + eh + 9.5 - 2 * a[6]),
                             (ex + s * 1.1 * idn.eye_w, ey + eh + 4))
            pen.line(cheek, _shade(skin, 0.6 * a[6]), 1.6)
            for d in (-2.0, 0.5, 3.0):
                p0 = (ex + s * (idn.eye_w + 2), ey + d)
                pen.line(np.array([p0, (p0[0] + s * 5, ey + 1.8 * d)]), _shade(skin, 0.6 * a[6]))


def _nose(pen: _Pen, idn: Identity, skin: np.ndarray, a: dict, ey: float) -> float:
    """AU9 wrinkles the bridge and lifts the nostrils, AU10 lifts them; returns the tip y."""
    ny = CY + idn.nose_len - 2.5 * a[9] - 1.5 * a[10]
    nw = idn.nose_w * (1 + 0.15 * a[9] + 0.1 * a[10])
    for s in (-1, 1):
        pen.line(_through((CX + s * 4, ey + 2), (CX + s * 4.5, (ey + ny) / 2),
                          (CX + s * 0.7 * nw, ny - 6)), _shade(skin, 0.25), 1.0)
        wing = _through((CX + s * 0.75 * nw, ny - 5), (CX + s * nw, ny - 1),
                        (CX + s * 0.45 * nw, ny + 1.5))
        pen.line(wing, _shade(skin, 0.5), 1.2)
        pen.ellipse((CX + s * 0.42 * nw, ny), (1.9, 1.2), _shade(skin, 0.75), angle=s * 15)
    pen.line(_through((CX - 0.3 * nw, ny + 1.8), (CX, ny + 2.6), (CX + 0.3 * nw, ny + 1.8)),
             _shade(skin, 0.3), 1.0)
    if a[9] > 0.15:
        for j in range(3):
            y = ey + 1 + 3 * j
            pen.line(_through((CX - 5, y + 1), (CX, y - 0.5), (CX + 5, y + 1)),
                     _shade(skin, 0.75 * a[9]), 1.6)
    return ny


def _corner_aus(a: dict, lateral: int, s: int) -> tuple[float, float]:
    """AU12 and AU14 intensities on side ``s`` (unilateral when ``lateral`` is -1 or +1)."""
    on = lateral == 0 or lateral == s
    return (a[12], a[14]) if on else (0.0, 0.0)


def _mouth(pen: _Pen, idn: Identity, skin: np.ndarray, a: dict, lateral: int, ny: float) -> None:
    """AU12 lifts and widens the corners, AU15 lowers them, AU14 dimples, AU20 stretches,
    AU23/AU24 narrow, thin and press the lips, AU10 raises the upper lip, AU17 pushes the lower
    lip up (chin boss), AU25 parts the lips, AU26 drops the jaw; teeth show with AU10/12/20."""
    my = CY + idn.mouth_y + 4 * a[26]
    base = idn.mouth_w * (1 + 0.35 * a[20] - 0.4 * a[23] - 0.15 * a[24])
    corners = {}
    for s in (-1, 1):
        a12, a14 = _corner_aus(a, lateral, s)
        w = base + idn.mouth_w * (0.3 * a12 + 0.08 * a14)
        corners[s] = np.array([CX + s * w, my - 10 * a12 + 9 * a[15] + 2 * a[20] - 1.5 * a14])
    left, right = corners[-1], corners[1]
    gap = 5 * a[25] + 16 * a[26] + 3 * a[10]
    gap = gap if gap > 0.8 else 0.0
    thin = max(0.15, 1 - 0.6 * a[23] - 0.7 * a[24])
    y_ui = my - 0.35 * gap - 2.5 * a[10]
    y_li = my + 0.65 * gap - 2.5 * a[17]
    upper_in = _through(left, (CX, y_ui), right)
    lower_in = _through(left, (CX, y_li), right)
    upper_out = _through(left, (CX, y_ui - idn.lip_t * thin - 0.6), right)
    lower_out = _through(left, (CX, y_li + 1.3 * idn.lip_t * thin + 1 - a[17]), right)
    lips = 0.6 * skin + 0.4 * np.array([170.0, 60.0, 70.0])
    pen.fill(np.concatenate([upper_out, upper_in[::-1]]), lips * 0.92)
    pen.fill(np.concatenate([lower_in, lower_out[::-1]]), lips)
    if gap > 0:
        pen.fill(np.concatenate([upper_in, lower_in[::-1]]), (55, 18, 22))
        teeth = min(1.0, max(0.0, a[12] + a[10] + a[20] - 0.4 * a[26]))
        if teeth > 0.1 and gap > 1.5:
            edge = upper_in + min(0.75, 0.45 + 0.3 * teeth) * (lower_in - upper_in)
            pen.fill(np.concatenate([upper_in, edge[::-1]]), (238, 236, 228))
    pen.line(upper_in, _shade(skin, 0.8), 1.0)
    if gap > 0:
        pen.line(lower_in, _shade(skin, 0.6), 1.0)
    if a[24] > 0.2:
        pen.line(upper_out[3:-3] - [0, 2], _shade(skin, 0.4 * a[24]), 1.0)
    for s, c in corners.items():
        a12, a14 = _corner_aus(a, lateral, s)
        fold = min(1.0, 0.15 + 0.3 * a[6] + 0.6 * a[9] + 0.7 * a[10] + 0.7 * a12)
        pen.line(_through((CX + s * (idn.nose_w + 2.5), ny - 1),
                          (CX + s * (idn.mouth_w + 3.5), (ny + my) / 2),
                          c + [s * 3, 3]), _shade(skin, 0.6 * fold), 1.6)
        if a[15] > 0.2:
            pen.line(np.array([c + [s * 0.5, 3], c + [s * 2.5, 9]]), _shade(skin, 0.65 * a[15]), 1.6)
        if a[20] > 0.2:
            pen.line(np.array([c + [s * 2, -1], c + [s * 7, 2]]), _shade(skin, 0.65 * a[20]), 1.6)
        if a14 > 0.2:
            pen.line(_through(c + [s * 3, -3], c + [s * 4, 0], c + [s * 3, 3]),
                     _shade(skin, 0.65 * a14), 1.2)
    if a[17] > 0.2:
        yb = lower_out[6, 1] + 6
        pen.line(_through((CX - 8, yb + 1), (CX, yb + 2.5 - a[17]), (CX + 8, yb + 1)),
                 _shade(skin, 0.65 * a[17]), 1.6)


def _occluder(pen: _Pen, kind: str, idn: Identity, rng: np.random.Generator, ey: float) -> None:
    """Sunglasses band over the eyes, a hand-like blob, or a random rectangle."""
    if kind == "glasses":
        tint = rng.uniform(10, 60, 3)
        for s in (-1, 1):
            ex = CX + s * idn.eye_sep
            pen.ellipse((ex, ey), (idn.eye_w + 4, 2.2 * idn.eye_h + 2), tint)
            pen.line(np.array([[ex + s * (idn.eye_w + 3), ey - 3], [CX + s * idn.face_w, ey - 5]]),
                     tint, 2.0)
        pen.line(np.array([[CX - 6, ey - 2], [CX + 6, ey - 2]]), tint, 2.5)
    elif kind == "hand":
        color = np.clip(np.array(idn.skin) * rng.uniform(0.85, 1.1), 0, 255)
        x, y = CX + rng.uniform(-28, 28), CY + rng.uniform(5, 45)
        rx, ry = rng.uniform(16, 24), rng.uniform(11, 16)
        pen.ellipse((x, y), (rx, ry), color, angle=rng.uniform(-30, 30))
        for j in range(4):
            fx = x - 0.75 * rx + 0.5 * rx * j
            pen.ellipse((fx, y - ry - 4), (3.2, 9), color, angle=rng.uniform(-10, 10))
    elif kind == "patch":
        w, h = rng.uniform(18, 40, 2)
        x, y = CX + rng.uniform(-30, 30), CY + rng.uniform(-30, 35)
        pen.fill(np.array([[x - w / 2, y - h / 2], [x + w / 2, y - h / 2],
                           [x + w / 2, y + h / 2], [x - w / 2, y + h / 2]]),
                 rng.uniform(40, 220, 3))


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """Busy clutter of coloured rectangles, discs and lines, blurred; (n, n, 3) uint8."""
    bg = np.empty((n, n, 3), np.uint8)
    bg[:] = rng.integers(0, 256, 3)
    for _ in range(10):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y, u, v = (int(c) for c in rng.integers(0, n, 4))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(bg, (x, y), (u, v), color, -1)
        elif kind == 1:
            cv2.circle(bg, (x, y), int(rng.integers(n // 16, n // 4)), color, -1)
        else:
            cv2.line(bg, (x, y), (u, v), color, int(rng.integers(1, 6)))
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.8, 2.5)).astype(np.float32)
    mean = bg.mean(axis=(0, 1))
    return (mean + _BG_CONTRAST * (bg - mean)).astype(np.uint8)


def render_face(params: FaceParams, size: int = 48) -> np.ndarray:
    """Draw one face; returns ``(size, size, 3)`` uint8 RGB."""
    k = 1 if size <= DESIGN else 2
    n = DESIGN * k
    rng = np.random.default_rng(params.detail_seed)
    bg = _background(rng, n)
    layer = np.zeros((n, n, 4), np.uint8)
    pen = _Pen(layer, k)
    idn = params.identity
    a = dict(zip(AUS, np.asarray(params.aus, float).tolist()))
    skin = np.array(idn.skin)
    ey = CY - 12.0
    _head(pen, idn, skin, a)
    _forehead(pen, idn, skin, a, ey)
    _hair_cap(pen, idn)
    _eyes(pen, idn, skin, a, ey)
    _brows(pen, idn, a, ey)
    ny = _nose(pen, idn, skin, a, ey)
    _mouth(pen, idn, skin, a, params.lateral, ny)
    _occluder(pen, params.occluder, idn, rng, ey)
    m = cv2.getRotationMatrix2D((n / 2, n / 2), params.rotation, params.scale)
    m[:, 2] += (params.shift_x * k, params.shift_y * k)
    zoom = np.array([[ZOOM, 0.0, (1 - ZOOM) * CX * k],
                     [0.0, ZOOM, (1 - ZOOM) * (CY + ZOOM_DY) * k], [0.0, 0.0, 1.0]])
    m = m @ zoom
    layer = cv2.warpAffine(layer, m, (n, n), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0, 0))
    alpha = layer[:, :, 3:].astype(np.float32) * (1 / 255)
    img = bg.astype(np.float32) * (1 - alpha) + layer[:, :, :3].astype(np.float32) * alpha
    if params.blur > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), params.blur * k)
    if size != n:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    grad = np.cos(params.light_angle) * ramp[None, :] + np.sin(params.light_angle) * ramp[:, None]
    gain = (1 + params.light * grad) * params.contrast
    img = img * gain[:, :, None] + (128 * (1 - params.contrast) + params.brightness)
    if params.noise > 0:
        img += rng.normal(0.0, params.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
