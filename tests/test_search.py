"""genaibook.search: building an index over real photos with the offline CLIP twin, save/load round trips, top-k
ordering and sizes, searching by image, and clear errors for empty folders, non-image files and bad queries.

The twin has random weights, so nothing here asserts which photo matches a text; only what holds for any weights."""

import numpy as np
import pytest
from PIL import Image

from genaibook.offline import quiet_libraries
from genaibook.search import ImageSearchIndex, embed_texts, list_images, sample_photos

MODEL = "openai/clip-vit-large-patch14"


@pytest.fixture(scope="module")
def clip(offline_home):
    from transformers import CLIPModel, CLIPProcessor

    with quiet_libraries():
        return CLIPModel.from_pretrained(MODEL).eval(), CLIPProcessor.from_pretrained(MODEL)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = sample_photos(folder)
    assert len(paths) >= 3  # scikit-learn and matplotlib ship three photos between them
    (folder / "README.txt").write_text("not an image")
    return folder, paths


@pytest.fixture(scope="module")
def index(clip, photos):
    return ImageSearchIndex.build(photos[0], *clip, batch_size=2, progress=False)


def test_build_from_folder(index, photos):
    assert index.paths == [str(p) for p in sorted(photos[1])]  # the .txt file is skipped
    assert index.embeddings.shape[0] == len(photos[1])
    assert np.allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-5)
    assert "openai/clip-vit-large-patch14" in repr(index)


def test_batch_size_does_not_change_embeddings(clip, photos, index):
    other = ImageSearchIndex.build(sorted(photos[1]), *clip, batch_size=5, progress=False)
    assert np.allclose(other.embeddings, index.embeddings, atol=1e-5)


def test_save_load_round_trip(index, clip, tmp_path):
    path = index.save(tmp_path / "sub" / "my-index")
    assert path.name == "my-index.npz" and path.is_file()
    loaded = ImageSearchIndex.load(path, *clip)
    assert loaded.paths == index.paths
    assert np.array_equal(loaded.embeddings, index.embeddings)
    assert loaded.query("a lion", k=3) == index.query("a lion", k=3)


def test_query_ranks_by_cosine(index, clip):
    results = index.query("a photo of a flower", k=3)
    scores = [s for _, s in results]
    assert len(results) == 3 and scores == sorted(scores, reverse=True)
    text = embed_texts(*clip, ["a photo of a flower"])[0]
    expected = index.embeddings @ text
    assert scores[0] == pytest.approx(expected.max(), abs=1e-5)
    assert all(-1 - 1e-5 <= s <= 1 + 1e-5 for s in scores)


def test_k_larger_than_index(index):
    results = index.query("anything", k=1000)
    assert len(results) == len(index)
    assert sorted(p for p, _ in results) == sorted(index.paths)


def test_query_by_image_finds_itself(index, photos):
    target = sorted(photos[1])[1]
    path, score = index.query_image(target, k=1)[0]
    assert path == str(target) and score == pytest.approx(1.0, abs=1e-4)


def test_in_memory_images_and_show(clip):
    images = [Image.new("RGB", (64, 48), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    idx = ImageSearchIndex.build(images, *clip, progress=False)
    assert idx.paths == ["<image 0>", "<image 1>", "<image 2>"]
    fig = idx.show(idx.query("green", k=2))
    assert len([ax for ax in fig.axes if ax.images]) == 2


def test_list_images_recursive(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("x.JPG", "a/y.png", "a/b/z.jpeg", "a/notes.md"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in list_images(tmp_path)] == ["z.jpeg", "y.png", "x.JPG"]  # sorted by path: a/b/z, a/y, x
    assert [p.name for p in list_images(tmp_path, recursive=False)] == ["x.JPG"]


def test_empty_folder_and_missing_folder(clip, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no images in"):
        ImageSearchIndex.build(tmp_path, *clip, progress=False)
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageSearchIndex.build(tmp_path / "missing", *clip, progress=False)
    with pytest.raises(ValueError, match="no images given"):
        ImageSearchIndex.build([], *clip, progress=False)


def test_non_image_files_name_the_culprit(clip, tmp_path, photos):
    fake = tmp_path / "broken.jpg"
    fake.write_text("this is text, not a JPEG")
    with pytest.raises(ValueError, match="broken.jpg as an image"):
        ImageSearchIndex.build(tmp_path, *clip, progress=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("text")
    with pytest.raises(ValueError, match="notes.txt as an image"):
        ImageSearchIndex.build([sorted(photos[1])[0], notes], *clip, progress=False)


def test_bad_queries_and_loads(index, clip, tmp_path):
    with pytest.raises(ValueError, match="positive integer"):
        index.query("x", k=0)
    with pytest.raises(ValueError, match="non-empty string"):
        index.query("   ")
    with pytest.raises(FileNotFoundError, match="no index at"):
        ImageSearchIndex.load(tmp_path / "nope.npz", *clip)
    with pytest.raises(ValueError, match="nothing to show"):
        index.show([])
    bad = tmp_path / "wrong-dim.npz"
    np.savez_compressed(
        bad, embeddings=np.ones((2, 7), np.float32), paths=np.array(["a", "b"]), model_name=np.array("m")
    )
    with pytest.raises(ValueError, match="7-d embeddings"):
        ImageSearchIndex.load(bad, *clip)
    with pytest.raises(ValueError, match="expected embeddings"):
        ImageSearchIndex(clip[0], clip[1], np.ones((3, 4)), ["a", "b"])
