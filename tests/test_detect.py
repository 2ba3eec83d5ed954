"""Face detection (MTCNN from facenet-pytorch's wheel) and five-point alignment."""
import json

import cv2
import numpy as np
import pytest
from skimage import data

from ufer.inference.detect import (
    ARCFACE_112,
    Face,
    FaceAligner,
    FaceDetector,
    MTCNNDetector,
    align,
    check_rgb,
    faces_from_mtcnn,
    similarity_transform,
)


@pytest.fixture(scope="module")
def detector() -> MTCNNDetector:
    return MTCNNDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_detect_astronaut_box_and_landmarks(detector, astronaut):
    before = astronaut.copy()
    faces = detector.detect(astronaut)
    assert np.array_equal(astronaut, before), "the photo was modified"
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.99
    assert face.box.dtype == np.float32 and face.landmarks.shape == (5, 2)
    # the astronaut's face spans about x 181..268, y 62..172 (eye to chin, hairline)
    np.testing.assert_allclose(face.box, [181, 62, 268, 172], atol=8)
    x1, y1, x2, y2 = face.box
    lm = face.landmarks
    assert ((lm[:, 0] > x1) & (lm[:, 0] < x2) & (lm[:, 1] > y1) & (lm[:, 1] < y2)).all()
    left_eye, right_eye, nose, mouth_left, mouth_right = lm
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


def test_aligned_astronaut_lands_on_template(detector, astronaut):
    face = detector.detect(astronaut)[0]
    crop = align(astronaut, face.landmarks, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    # the crop is enlarged so MTCNN finds the face again; its landmarks sit on the template
    big = cv2.resize(crop, (224, 224), interpolation=cv2.INTER_CUBIC)
    again = detector.detect(big)
    assert len(again) == 1
    found = (again[0].landmarks + 0.5) / 2 - 0.5
    matrix = similarity_transform(face.landmarks, ARCFACE_112.scaled(112))
    moved = np.c_[face.landmarks, np.ones(5)] @ matrix.T
    assert np.abs(found - moved).max() < 3.0  # where the warp put them (measured 2.1)
    # the least-squares fit leaves a few pixels between this face's shape and the template
    assert np.linalg.norm(found - ARCFACE_112.scaled(112), axis=1).mean() < 7.0  # 5.1
    # tilting the photo does not change where the landmarks go
    tilt = cv2.getRotationMatrix2D((256, 256), 20, 1.0)
    rotated = cv2.warpAffine(astronaut, tilt, (512, 512))
    rotated_face = detector.detect(rotated)[0]
    crop_rotated = align(rotated, rotated_face.landmarks, 112)
    centre = (slice(30, 100), slice(25, 87))  # eyes to mouth, away from the black corners
    diff = np.abs(crop_rotated[centre].astype(int) - crop[centre].astype(int)).mean()
    assert diff < 12, diff


@pytest.mark.parametrize("name", ["coffee", "noise", "tiny"])
def test_face_free_image_gives_no_face(detector, name):
    rng = np.random.default_rng(0)
    image = {"coffee": data.coffee,
             "noise": lambda: rng.integers(0, 256, (300, 400, 3), dtype=np.uint8),
             "tiny": lambda: np.zeros((12, 12, 3), np.uint8)}[name]()  # below min_face_size
    assert detector.detect(image) == []


def test_detector_rejects_non_rgb(detector):
    with pytest.raises(TypeError, match=r"RGB uint8 array \(H, W, 3\), got uint8 array \(8, 8\)"):
        detector.detect(np.zeros((8, 8), np.uint8))
    with pytest.raises(TypeError, match="float64"):
        check_rgb(np.zeros((8, 8, 3)))
    assert isinstance(detector, FaceDetector)
    assert json.loads(json.dumps(detector.describe()))["name"] == "mtcnn"


def test_faces_from_mtcnn_converts_object_arrays():
    boxes = np.array([np.array([1.0, 2.0, 30.0, 40.0]), np.array([5.0, 5.0, 9.0, 9.0])],
                     dtype=object)
    probs = np.array([0.95, 0.5], dtype=object)
    points = np.array([np.arange(10.0).reshape(5, 2), np.zeros((5, 2))], dtype=object)
    faces = faces_from_mtcnn(boxes, probs, points, min_score=0.9)
    assert len(faces) == 1
    assert faces[0].box.dtype == np.float32 and faces[0].landmarks.dtype == np.float32
    np.testing.assert_array_equal(faces[0].box, [1, 2, 30, 40])
    assert faces[0].score == pytest.approx(0.95)
    assert faces_from_mtcnn(None, [None], None, 0.5) == []


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([12.0, -3.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)
    # a mirror image is never matched by a reflection
    mirrored = similarity_transform(src, src * [-1, 1])
    assert np.linalg.det(mirrored[:, :2]) > 0
    with pytest.raises(ValueError, match="degenerate"):
        similarity_transform(np.ones((5, 2)), dst)


def test_template_scaling_and_record():
    np.testing.assert_allclose(ARCFACE_112.scaled(112), ARCFACE_112.points)
    np.testing.assert_allclose(ARCFACE_112.scaled(224), (np.array(ARCFACE_112.points) + 0.5)
                               * 2 - 0.5)
    record = json.loads(json.dumps(ARCFACE_112.to_dict()))
    assert record["name"] == "arcface_112" and len(record["points"]) == 5
    assert record["landmarks"][0] == "left_eye"


def test_small_crop_of_a_large_face_is_area_averaged(detector, astronaut):
    """A 48 px crop from a 4x enlarged photo matches the crop from the original photo."""
    face = detector.detect(astronaut)[0]
    small = align(astronaut, face.landmarks, 48)
    big = cv2.resize(astronaut, (2048, 2048), interpolation=cv2.INTER_CUBIC)
    from_big = align(big, (face.landmarks + 0.5) * 4 - 0.5, 48)
    assert np.abs(from_big.astype(int) - small.astype(int)).mean() < 2  # a plain warp: 4.6
    before = big.copy()
    align(big, (face.landmarks + 0.5) * 4 - 0.5, 48)
    assert np.array_equal(big, before)


def test_align_rejects_bad_landmarks(astronaut):
    with pytest.raises(ValueError, match=r"five \(x, y\) landmarks"):
        align(astronaut, np.zeros((4, 2)), 112)
    with pytest.raises(ValueError, match=">= 8"):
        align(astronaut, np.zeros((5, 2)), 4)


class _TwoFaces:
    """A detector stub returning a small and a large face (not sorted)."""

    def detect(self, image: np.ndarray) -> list[Face]:
        small = Face(np.array([0, 0, 10, 10], np.float32), 0.99,
                     np.array([[2, 3], [7, 3], [5, 5], [3, 8], [7, 8]], np.float32))
        large = Face(np.array([100, 100, 300, 300], np.float32), 0.95,
                     np.array([[150, 160], [250, 160], [200, 210], [160, 260], [240, 260]],
                              np.float32))
        return [small, large]

    def describe(self) -> dict:
        return {"name": "two"}


def test_face_aligner_keeps_the_largest_face(astronaut):
    aligner = FaceAligner(_TwoFaces(), size=64)
    crop, face = aligner(astronaut)
    assert crop.shape == (64, 64, 3) and face.area == 200 * 200
    np.testing.assert_array_equal(crop, align(astronaut, face.landmarks, 64))
    record = json.loads(json.dumps(aligner.describe()))
    assert record["template"]["name"] == "arcface_112" and record["size"] == 64
