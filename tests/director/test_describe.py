"""The offline describer: its ranking against a brute-force computation, planted embeddings it must find, the bank
file's checks, `dcrt describe`, and the generating commands' --auto-prompt."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dcrt
from dcrt.director.bank import SUBJECT_TEMPLATE, load_bank, rank_prompts
from dcrt.director.clip_space import load_clip_space
from dcrt.errors import UsageError
from dcrt.weights import Weights


@pytest.fixture(scope="module")
def space():
    return load_clip_space(dcrt.get_preset("tiny"), Weights("tiny"))


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(1).random((60, 90, 3)) * 255).astype(np.uint8)).save(path)
    return path


def test_ranking_equals_brute_force(space):
    bank = load_bank()
    frames = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    ranked = rank_prompts(space, frames, bank, top=10)

    # Brute force: every candidate composed and scored on its own, each text and image embedded alone.
    images = [space.embed_images(frame[None])[0] for frame in frames]
    cosines: dict[str, float] = {}

    def cosine(text: str) -> float:
        if text not in cosines:
            t = space.embed_texts([text])[0]
            cosines[text] = float(np.mean([image @ t for image in images]))
        return cosines[text]

    candidates = []
    for subject in bank.subjects:
        for motion in subject.motions:
            for scene in bank.scenes:
                score = (cosine(SUBJECT_TEMPLATE.format(subject.name)) + cosine(motion) + cosine(scene.label)) / 3
                candidates.append((f"{motion} {scene.name}", score))
    best = sorted(candidates, key=lambda c: -c[1])[:10]
    assert [r.prompt for r in ranked] == [prompt for prompt, _ in best]
    np.testing.assert_allclose([r.score for r in ranked], [score for _, score in best], rtol=0, atol=1e-6)
    assert len({r.prompt for r in ranked}) == 10 and ranked[0].source == f"bank v{bank.version}"


class PlantedEmbedder:
    """Texts: one-hot at their place in `vocabulary`. Images: the vector planted for their top-left red value."""

    logit_scale = 100.0

    def __init__(self, vocabulary: list[str], planted: dict[int, list[str]]):
        self.vocabulary = vocabulary
        self.planted = {red: sum(self._one_hot(t) for t in texts) for red, texts in planted.items()}
        self.seen: list[int] = []

    def _one_hot(self, text: str) -> np.ndarray:
        row = np.zeros(len(self.vocabulary), np.float32)
        row[self.vocabulary.index(text)] = 1
        return row

    def embed_texts(self, prompts):
        return np.stack([self._one_hot(p) for p in prompts])

    def embed_images(self, frames):
        self.seen += [int(f[0, 0, 0]) for f in frames]
        rows = np.stack([self.planted[int(f[0, 0, 0])] for f in frames])
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _solid(red: int) -> np.ndarray:
    return np.full((48, 80, 3), (red, 100, 200), np.uint8)


def test_planted_best_is_found():
    bank = load_bank()
    sea, sunset = "a photo of the sea", "a photo taken at sunset"
    fake = PlantedEmbedder(bank.texts(), {10: [sea, "gentle swaying of waves", sunset]})
    ranked = dcrt.describe(_solid(10), "tiny", top=3, embedder=fake)
    assert ranked[0].prompt == "gentle swaying of waves at sunset"
    assert (ranked[0].subject, ranked[0].motion, ranked[0].scene) == ("the sea", "gentle swaying of waves", "at sunset")
    assert ranked[0].score == pytest.approx(3**0.5 / 3)  # three unit cosines of 1/sqrt(3), averaged
    assert ranked[1].score < ranked[0].score and fake.seen == [10]


def test_both_key_frames_are_seen():
    """The motion is planted in the second frame only: a describer that looked at the first alone would pick the
    sea's first motion (all its motions tie there)."""
    bank = load_bank()
    sea, sunset = "a photo of the sea", "a photo taken at sunset"
    fake = PlantedEmbedder(bank.texts(), {10: [sea, sunset], 20: [sea, "waves crashing against the rocks"]})
    ranked = dcrt.describe([_solid(10), _solid(20)], "tiny", top=1, embedder=fake)
    assert ranked[0].prompt == "waves crashing against the rocks at sunset" and fake.seen == [10, 20]
    only_first = dcrt.describe(_solid(10), "tiny", top=1, embedder=fake)
    assert only_first[0].prompt == "gentle swaying of waves at sunset"


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "cannot read the prompt bank"),
        ('{"version": 1, "subjects": []}', "KeyError"),
        ('{"version": 1, "subjects": [], "scenes": [{"name": "x", "label": "y"}]}', "at least one motion"),
        (
            '{"version": 1, "subjects": [{"name": "a", "motions": ["m"]}, {"name": "b", "motions": ["m"]}],'
            ' "scenes": [{"name": "x", "label": "y"}]}',
            "lists motions twice: m",
        ),
        (
            '{"version": 1, "subjects": [{"name": "a", "motions": [" "]}], "scenes": [{"name": "x", "label": "y"}]}',
            "empty",
        ),
    ],
)
def test_bad_bank_is_one_line(tmp_path, content, message):
    path = tmp_path / "bank.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message) as error:
        load_bank(path)
    assert "\n" not in str(error.value)


def test_shipped_bank_loads():
    bank = load_bank()
    assert bank.version >= 1 and len(bank.subjects) >= 30 and len(bank.scenes) >= 20
    assert all(len(m.split()) <= 12 for s in bank.subjects for m in s.motions)  # DynamiCrafter's short prompts


def test_describe_command(picture, run_cli, space):
    code, out, err = run_cli(["describe", str(picture), "--res", "tiny", "--top", "3"])
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == ["1", "2", "3"]
    scores = [float(line.split()[1]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    code, out, _ = run_cli(["describe", str(picture), str(picture), "--res", "tiny", "--top", "3", "--json"])
    prompts = json.loads(out)["prompts"]
    assert code == 0 and [p["prompt"] for p in prompts] == [line.split(None, 2)[2] for line in lines]
    assert prompts == [r.as_dict() for r in dcrt.describe([str(picture)] * 2, "tiny", top=3, embedder=space)]


def _bad_describe(tmp_path, picture):
    p = str(picture)
    batch = ["batch", str(tmp_path), "--out-dir", str(tmp_path / "v"), "--res", "tiny"]  # the folder holds in.png
    return [
        (["describe", p, "--res", "tiny", "--top", "0"], "--top must be 1-100"),
        (["describe", p, p, p, "--res", "tiny"], "describe takes IMAGE or FIRST LAST, got 3"),
        (["describe", str(tmp_path / "none.png"), "--res", "tiny"], "does not exist"),
        (["describe", p, "--res", "tiny", "--bank", str(tmp_path / "none.json")], "prompt bank"),
        (["describe", p, "--res", "tiny", "--llm-model", "m"], "need --llm URL"),
        (["describe", p, "--res", "tiny", "--llm", "ftp://host", "--llm-model", "m"], "http:// or https://"),
        (["describe", p, "--res", "tiny", "--llm", "http://127.0.0.1:9"], "--llm needs a model name"),
        (["describe", p, "--res", "tiny-svd"], "tiny-svd does not support describe (its checkpoints"),
        (["describe", p, "--res", "512", "--ckpt", str(tmp_path / "none.ckpt")], "does not exist"),
        (["animate", p, "a cat", "--res", "tiny", "--auto-prompt"], "--auto-prompt chooses the prompt itself"),
        (["animate", p, "--res", "tiny-svd", "--auto-prompt"], "tiny-svd does not support --auto-prompt"),
        (["interpolate", p, p, "--res", "tiny", "--auto-prompt", "--prompts", p], "--auto-prompt and --prompts"),
        (["interpolate", p, "--res", "tiny", "--auto-prompt"], "at least two key frames, got 1"),
        (["loop", p, "clouds", "--res", "tiny", "--auto-prompt"], "--auto-prompt chooses the prompt itself"),
        (["loop", p, "--res", "tiny-svd"], "cannot loop"),
        (["batch", str(tmp_path), "--out-dir", str(tmp_path), "--auto-prompt", "--prompts", p], "use one"),
        (batch + ["--mode", "interpolate", "--auto-prompt"], "1 images, but interpolate needs 2 images per video"),
        (["batch", str(tmp_path / "none"), "--out-dir", str(tmp_path), "--auto-prompt"], "is not a directory"),
        (batch + ["--auto-prompt", "--llm-model", "m"], "need --llm URL"),
        (batch, "no .txt prompt file (one prompt per line; or --auto-prompt)"),
    ]


# Runs the command line on each argument list in one fresh interpreter (no DCRT_LLM_* variables); reports whether
# torch was imported.
_WITHOUT_TORCH = """
import contextlib, io, json, sys
from dcrt import cli
results = []
for args in json.loads(sys.argv[1]):
    sys.argv, err, code = ["dcrt", *args], io.StringIO(), None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as exc:
            code = exc.code
    results.append([code, err.getvalue()])
print(json.dumps({"results": results, "torch": "torch" in sys.modules}))
"""


def test_bad_input_is_one_line_exit_2_before_torch(tmp_path, picture, monkeypatch):
    for name in ("DCRT_LLM_MODEL", "DCRT_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    cases = _bad_describe(tmp_path, picture)
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_TORCH, json.dumps([args for args, _ in cases])],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    for (args, message), (code, err) in zip(cases, report["results"]):
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, err)
    assert not report["torch"]


def test_animate_without_prompt_describes_and_logs_it(picture, tmp_path, run_cli, space):
    target = tmp_path / "v.mp4"
    code, out, err = run_cli(["animate", str(picture), "--res", "tiny", "--steps", "1", "-o", str(target)])
    assert code == 0, err
    chosen = dcrt.describe(str(picture), "tiny", top=1, embedder=space)[0].prompt
    assert f"dcrt: auto prompt for in: {chosen!r}" in err
    assert out.strip() == str(target) and target.stat().st_size > 1000


def test_interpolate_describes_each_pair_of_key_frames(picture, tmp_path, run_cli, space):
    other = tmp_path / "other.png"
    Image.fromarray(np.full((64, 64, 3), 30, np.uint8)).save(other)
    frames = [str(picture), str(other), str(picture)]
    args = ["interpolate", *frames, "--auto-prompt", "--res", "tiny", "--steps", "1", "-o", str(tmp_path / "i.mp4")]
    code, _, err = run_cli(args)
    assert code == 0, err
    for pair in ([frames[0], frames[1]], [frames[1], frames[2]]):  # each clip's prompt sees both of its key frames
        assert f"auto prompt for in: {dcrt.describe(pair, 'tiny', top=1, embedder=space)[0].prompt!r}" in err


def test_batch_describes_the_entries_without_a_prompt_with_one_clip(tmp_path, run_cli, space, monkeypatch):
    """A prompt file's `auto` lines are described (one CLIP for all, loaded before the video model), logged, and
    sampled with; the other entries keep their prompts."""
    import dcrt.api
    import dcrt.director.describe
    import dcrt.loading

    folder = tmp_path / "stills"
    folder.mkdir()
    for name, seed in (("a", 1), ("b", 2), ("c", 3)):  # three different pictures: three different descriptions
        pixels = (np.random.default_rng(seed).random((48, 80, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{name}.png")
    (folder / "prompts.txt").write_text("auto\nclouds drifting\nauto\n")
    events, prompts = [], []
    open_embedder, open_backend, save_video = (
        dcrt.director.describe.open_embedder, dcrt.loading.open_backend, dcrt.api.save_video
    )  # fmt: skip

    def embedder(*args, **kwargs):
        events.append("clip")
        return open_embedder(*args, **kwargs)

    def backend(*args, **kwargs):
        events.append("video model")
        return open_backend(*args, **kwargs)

    def save(backend, mode, images, prompt, target, **kwargs):
        prompts.append(prompt)
        return save_video(backend, mode, images, prompt, target, **kwargs)

    monkeypatch.setattr(dcrt.director.describe, "open_embedder", embedder)
    monkeypatch.setattr(dcrt.loading, "open_backend", backend)
    monkeypatch.setattr(dcrt.api, "save_video", save)
    out_dir = tmp_path / "videos"
    code, out, err = run_cli(["batch", str(folder), "--out-dir", str(out_dir), "--res", "tiny", "--steps", "1"])
    assert code == 0, err
    chosen = {
        name: dcrt.describe(str(folder / f"{name}.png"), "tiny", top=1, embedder=space)[0].prompt for name in "ac"
    }
    assert prompts == [chosen["a"], "clouds drifting", chosen["c"]]
    for name in "ac":
        assert f"dcrt: auto prompt for {name}: {chosen[name]!r}" in err
    assert "auto prompt for b" not in err
    assert events == ["clip", "video model"]
    assert sorted(p.name for p in out_dir.iterdir()) == ["a_animate.mp4", "b_animate.mp4", "c_animate.mp4"]
    assert out.split() == [str(out_dir / f"{name}_animate.mp4") for name in "abc"]


def test_batch_auto_prompt_reads_no_prompt_file_and_pairs_key_frames(tmp_path):
    from dcrt.batch import read_prompt_dir

    for name in ("k1.png", "k2.png", "k3.png", "k4.png"):
        Image.new("RGB", (8, 8), "teal").save(tmp_path / name)
    jobs = read_prompt_dir(tmp_path, "interpolate", auto_prompt=True)  # no .txt in the folder
    assert [([p.name for p in job.images], job.prompt) for job in jobs] == [
        (["k1.png", "k2.png"], None),
        (["k3.png", "k4.png"], None),
    ]
    (tmp_path / "prompts.txt").write_text("a boat\nauto\n")
    assert [job.prompt for job in read_prompt_dir(tmp_path, "interpolate")] == ["a boat", None]
    assert [job.prompt for job in read_prompt_dir(tmp_path, "animate", auto_prompt=True)] == [None] * 4
