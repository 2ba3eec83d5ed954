"""Face detection and five-point alignment: one implementation for dataset preparation
(``ufer prepare --detect``) and for inference.

A :class:`FaceDetector` turns an RGB uint8 photo into :class:`Face` records (box, score,
five landmarks). :func:`align` maps a face's five landmarks onto one template with a
least-squares similarity transform (rotation, uniform scale, translation) and returns the
warped square crop. The template is :data:`ARCFACE_112`: the five-point template of
InsightFace's ArcFace (112 x 112 crops, OpenCV pixel-centre coordinates), scaled to the
requested size. Its name and coordinates (``ARCFACE_112.to_dict()``) go into the manifest
sidecar and the exported bundle, so that inference aligns exactly as training data was.

:class:`MTCNNDetector` wraps facenet-pytorch's MTCNN, whose weights ship inside its wheel
(no download). facenet-pytorch pins torch < 2.3 and numpy < 2 although it runs on current
versions, so it is installed without its dependencies (``make install`` does this)::

    pip install --no-deps facenet-pytorch==2.6.0 && pip install requests
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

# Landmark order of every Face: left/right as seen in the image (the subject's right eye is
# the image's left eye).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
INSTALL_HINT = ("the MTCNN face detector needs facenet-pytorch, installed without its "
                "outdated pins: pip install --no-deps facenet-pytorch==2.6.0 && "
                "pip install requests (make install does this)")


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where the five landmarks land in an aligned square crop.

    Attributes:
        name: identifier recorded in sidecars and bundles.
        reference_size: side, in pixels, of the square the points are given for.
        points: five (x, y) in ``LANDMARK_NAMES`` order, pixel-centre coordinates (pixel
            (0, 0) covers [-0.5, 0.5]^2, as in OpenCV).
    """

    name: str
    reference_size: int
    points: tuple[tuple[float, float], ...]

    def scaled(self, size: int) -> np.ndarray:
        """The points for a ``size`` x ``size`` crop: float64 (5, 2), (x, y).

        The crop covers the same region of the face as the reference square, so a point
        at edge coordinate u (= centre coordinate + 0.5) moves to u * size / reference_size.
        """
        points = np.asarray(self.points, dtype=np.float64)
        return (points + 0.5) * (size / self.reference_size) - 0.5

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description: name, reference size, landmark names and points."""
        return {"name": self.name, "reference_size": self.reference_size,
                "landmarks": list(LANDMARK_NAMES), "points": [list(p) for p in self.points]}


ARCFACE_112 = AlignmentTemplate(
    name="arcface_112",
    reference_size=112,
    points=((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366),
            (41.5493, 92.3655), (70.7299, 92.2041)),
)
TEMPLATES = {ARCFACE_112.name: ARCFACE_112}


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: float32 (4,): x1, y1, x2, y2 in pixels of the input image (may reach outside
            it for faces cut by the border).
        score: detector confidence in [0, 1].
        landmarks: float32 (5, 2): (x, y) of ``LANDMARK_NAMES``, in pixels of the input image.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray = field(repr=False)

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        x1, y1, x2, y2 = (float(v) for v in self.box)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


@runtime_checkable
class FaceDetector(Protocol):
    """Anything that finds faces with five landmarks in an RGB photo.

    ``detect(image)`` takes a uint8 array (H, W, 3), RGB, which it must not modify, and
    returns the faces found, largest box first ([] when there is none). ``describe()``
    returns a JSON-ready dict (name and settings) for sidecars and bundles.
    """

    def detect(self, image: np.ndarray) -> list[Face]: ...

    def describe(self) -> dict[str, Any]: ...


def check_rgb(image: np.ndarray) -> None:
    """Raise TypeError unless ``image`` is a uint8 array (H, W, 3) with H, W >= 1."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        got = (f"{image.dtype} array {image.shape}" if isinstance(image, np.ndarray)
               else type(image).__name__)
        raise TypeError(f"expected an RGB uint8 array (H, W, 3), got {got}")


class MTCNNDetector:
    """MTCNN (facenet-pytorch, weights from its wheel) as a :class:`FaceDetector`.

    Args:
        min_score: faces whose final-stage probability is below this are dropped
            (MTCNN's own last threshold is 0.7).
        min_face_size: smallest face side searched for, in pixels.
        device: torch device for the three networks.
    """

    name = "mtcnn"

    def __init__(self, min_score: float = 0.9, min_face_size: int = 20,
                 device: str = "cpu") -> None:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as exc:
            raise ImportError(INSTALL_HINT) from exc
        self.min_score = float(min_score)
        self.min_face_size = int(min_face_size)
        self._mtcnn = MTCNN(keep_all=True, min_face_size=self.min_face_size,
                            select_largest=True, device=device)

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in ``image`` (uint8 (H, W, 3) RGB, not modified), largest box first."""
        check_rgb(image)
        if min(image.shape[:2]) < self.min_face_size:  # MTCNN's image pyramid would be empty
            return []
        boxes, probs, points = self._mtcnn.detect(image, landmarks=True)
        return faces_from_mtcnn(boxes, probs, points, self.min_score)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "package": "facenet-pytorch", "min_score": self.min_score,
                "min_face_size": self.min_face_size}


def faces_from_mtcnn(boxes: Any, probs: Any, points: Any, min_score: float) -> list[Face]:
    """facenet-pytorch's ``detect`` output for ONE image -> faces with score >= min_score.

    Under numpy 2 facenet-pytorch returns object arrays (and ``None`` when nothing was
    found); they are converted to float32 here. Order is kept (largest box first).
    """
    if boxes is None or points is None:
        return []
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    probs = np.asarray(probs, dtype=np.float32).reshape(-1)
    points = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
    return [Face(box=b, score=float(p), landmarks=lm)
            for b, p, lm in zip(boxes, probs, points) if p >= min_score]


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform taking ``src`` points onto ``dst`` (Umeyama 1991).

    Rotation, uniform scale and translation; never a reflection.

    Args:
        src, dst: float arrays (K, 2) of (x, y), K >= 2, not all ``src`` points equal.

    Returns:
        float64 (2, 3) matrix M with ``dst[k] ~= M @ (x_k, y_k, 1)``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two point sets (K, 2) of equal shape, K >= 2; got "
                         f"{src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if not np.isfinite(src_var) or src_var < 1e-12:
        raise ValueError(f"landmarks are degenerate (all at one point or not finite): "
                         f"{src.tolist()}")
    u, s, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(s) @ d)) / src_var
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align(image: np.ndarray, landmarks: np.ndarray, size: int,
          template: AlignmentTemplate = ARCFACE_112) -> np.ndarray:
    """Warp the face with these five landmarks onto ``template`` in a ``size`` square.

    Bilinear warp; where the crop is much smaller than the face (scale s < 1/2) the warp
    is done at an integer factor k = floor(1/s) larger and area-averaged down, so the crop
    is not aliased. Outside the photo is black (the ArcFace convention).

    Args:
        image: uint8 (H, W, 3) RGB; not modified.
        landmarks: (5, 2) (x, y) in ``LANDMARK_NAMES`` order, pixels of ``image``.
        size: side of the square crop, >= 8.
        template: where the landmarks go (scaled to ``size``).

    Returns:
        A new uint8 array (size, size, 3), RGB.
    """
    check_rgb(image)
    if size < 8:
        raise ValueError(f"aligned crop size must be >= 8 pixels, got {size}")
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"need five (x, y) landmarks, got shape {landmarks.shape}")
    matrix = similarity_transform(landmarks, template.scaled(size))
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    k = max(1, math.floor(1.0 / scale))
    matrix = matrix * k
    matrix[:, 2] += (k - 1) / 2  # final pixel j is the centre of oversampled block k*j..k*j+k-1
    warped = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size * k, size * k),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=(0, 0, 0))
    if k > 1:
        warped = cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)
    return warped


@dataclass
class FaceAligner:
    """Detect, keep the largest face, align it: the step dataset adapters are given.

    Attributes:
        detector: any :class:`FaceDetector`.
        size: side of the aligned crops.
        template: alignment template.
    """

    detector: FaceDetector
    size: int = 112
    template: AlignmentTemplate = ARCFACE_112

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, Face] | None:
        """(aligned uint8 (size, size, 3) crop, its face) of the largest face, or None."""
        faces = self.detector.detect(image)
        if not faces:
            return None
        face = max(faces, key=lambda f: f.area)
        return align(image, face.landmarks, self.size, self.template), face

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for the sidecar: detector, crop size, template."""
        return {"detector": self.detector.describe(), "size": self.size,
                "template": self.template.to_dict(), "face": "largest"}
