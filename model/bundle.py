"""Load a bundle, verify it, and score with onnxruntime (torch-free).

This is the one scoring path: the service and `afm-eval` both go through `Bundle.run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pydantic import ValidationError

from model.features import FeatureSpace
from model.manifest import GRAPH_OUTPUTS, INPUT_NAMES, MANIFEST_FILE, Manifest
from model.validation import describe_error
from model.verification import FileChanged, Identity, VerifiedFiles, hash_file
from model.vocabulary import VocabularyFileError


class BundleError(Exception):
    """A bundle that cannot be served; the message says why in one line."""


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # (B,) the additive score (a logit for binary tasks)
    attention: np.ndarray  # (B, P)
    contributions: np.ndarray  # (B, P)
    field_linear: np.ndarray  # (B, F)
    prediction: np.ndarray  # (B,) what a user is served: a probability, or the clipped score


class Bundle:
    def __init__(self, directory: Path, manifest: Manifest, session: ort.InferenceSession) -> None:
        self.directory = directory
        self.manifest = manifest
        self.features: FeatureSpace = manifest.feature_space()
        self._session = session

    @classmethod
    def load(cls, directory: str | Path, intra_op_threads: int = 1,
             verified: VerifiedFiles | None = None) -> Bundle:
        """Verify every file's sha256 against the manifest (`verified`: digests another load
        on this machine computed, trusted while the file is unchanged; None: hash every
        file), then load. A file that changes meanwhile is refused."""
        directory = Path(directory)
        manifest = _read_manifest(directory)
        identities = {name: _verify(directory, name, sha256, verified) for name, sha256 in
                      {manifest.onnx_file: manifest.onnx_sha256, **manifest.files}.items()}
        try:
            manifest = manifest.with_vocabularies(directory)
        except VocabularyFileError as e:
            raise BundleError(f"bundle {directory}: {e}") from e
        session = _session(directory / manifest.onnx_file, intra_op_threads)
        _check_signature(session, manifest)
        for name, identity in identities.items():  # what was opened is what was verified
            if not _unchanged(directory / name, identity):
                raise BundleError(f"bundle {directory}: {name} changed while it was loaded")
        return cls(directory, manifest, session)

    def run(self, indices: np.ndarray, weights: np.ndarray) -> Scores:
        """(B, F, L) int64 indices and float32 weights -> scores, predictions, explanations."""
        outputs = self._session.run(list(GRAPH_OUTPUTS[self.manifest.format_version]),
                                    {"indices": indices, "weights": weights})
        if len(outputs) == 4:  # format 1: no prediction in the graph
            outputs.append(self.prediction(outputs[0]))
        return Scores(*outputs)

    def check_indices(self, indices: np.ndarray) -> None:
        """Raw tensors (the Open Inference Protocol path) must index inside the table."""
        if indices.size and (indices.min() < 0 or indices.max() >= self.features.num_features):
            raise ValueError(
                f"indices must lie in [0, {self.features.num_features}), "
                f"got [{indices.min()}, {indices.max()}]"
            )

    def prediction(self, score: np.ndarray) -> np.ndarray:
        """What a score means to a user, in numpy: a probability by the manifest's calibration
        map (binary) or the clipped value. The graph's `prediction` output is the same map;
        this serves bundles of format 1, whose graph has none."""
        if self.manifest.task == "binary":
            return self.manifest.calibration.probability(score).astype(np.float32)
        low, high = self.manifest.label_range
        return np.clip(score, low, high)


def _verify(directory: Path, name: str, expected: str,
            verified: VerifiedFiles | None) -> Identity:
    path = directory / name
    if not path.is_file():
        raise BundleError(f"bundle {directory}: {name} is missing")
    try:
        actual, identity = verified.sha256(path) if verified is not None else hash_file(path)
    except FileChanged as e:
        raise BundleError(f"bundle {directory}: {e}") from e
    if actual != expected:
        raise BundleError(f"bundle {directory}: {name} sha256 {actual[:12]}... does not match "
                          f"the manifest's {expected[:12]}...")
    return identity


def _unchanged(path: Path, identity: Identity) -> bool:
    try:
        return Identity.at(path) == identity
    except OSError:
        return False


def _read_manifest(directory: Path) -> Manifest:
    """The manifest, vocabularies not yet read (format 3: before its files are verified)."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise BundleError(f"bundle {directory}: {MANIFEST_FILE} is missing")
    try:
        return Manifest.parse(directory)
    except ValidationError as e:
        problem = describe_error(e, Manifest, "the manifest")
        raise BundleError(f"bundle {directory}: invalid {MANIFEST_FILE}: {problem}") from e
    except (OSError, ValueError) as e:
        raise BundleError(f"bundle {directory}: unreadable {MANIFEST_FILE}: {e}") from e


def _session(onnx_path: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    # Spinning idle threads burn the CPU that other workers need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(onnx_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # onnxruntime raises its own untyped errors for bad graphs
        raise BundleError(f"bundle {onnx_path.parent}: onnxruntime cannot load the model: {e}") from e


def _check_signature(session: ort.InferenceSession, manifest: Manifest) -> None:
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    expected = GRAPH_OUTPUTS[manifest.format_version]
    if tuple(sorted(inputs)) != tuple(sorted(INPUT_NAMES)) or tuple(outputs) != expected:
        raise BundleError(
            f"ONNX signature {sorted(inputs)} -> {outputs} is not {INPUT_NAMES} -> {expected} "
            f"(manifest format_version {manifest.format_version})"
        )
    fields, entries = inputs["indices"][1], inputs["indices"][2]
    if (fields, entries) != (len(manifest.fields), manifest.max_entries):
        raise BundleError(
            f"ONNX takes {fields} fields x {entries} entries but the manifest declares "
            f"{len(manifest.fields)} x {manifest.max_entries}"
        )
