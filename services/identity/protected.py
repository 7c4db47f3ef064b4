"""Protected identities: an operator's gallery of faces that may not become characters (a head of state, a public
figure who asked, a person whose photos were abused). A reference whose face matches one of them at the pass
level (the calibrated IDR at which a render counts as the same person) is refused with `protected_identity`.

The gallery is a folder of photos, one face each; a photo in a sub-folder is labelled with the sub-folder's name
(several photos of one person), a photo at the top with its file name. It is read once, at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idlock.errors import PermissionDenied
from idlock.faces.encoders import l2_normalize
from idlock.faces.engine import IdentityEngine

log = logging.getLogger("idlock.identity")

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


class ProtectedIdentity(PermissionDenied):
    reason = "protected_identity"


@dataclass(frozen=True)
class ProtectedFace:
    label: str
    embedding: np.ndarray


@dataclass(frozen=True)
class Match:
    label: str
    reference_index: int
    calibrated: float


class ProtectedGallery:
    def __init__(self, faces: list[ProtectedFace]) -> None:
        self.faces = faces

    def __len__(self) -> int:
        return len(self.faces)

    @classmethod
    def load(cls, engine: IdentityEngine, folder: Path | None) -> ProtectedGallery:
        """Every photo under `folder` with exactly one face (a photo with none or several is skipped, and
        logged: it cannot say whom it protects)."""
        if folder is None:
            return cls([])
        root = Path(folder)
        if not root.is_dir():
            raise FileNotFoundError(f"IDLOCK_IDENTITY_PROTECTED_GALLERY_DIR: {root} is not a folder")
        faces: list[ProtectedFace] = []
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
            label = path.parent.name if path.parent != root else path.stem
            found = engine.detect_faces(path.read_bytes(), embed=True)
            if len(found) != 1 or found[0].embedding is None:
                log.warning("protected gallery: %s skipped (%d faces found, 1 needed)", path.name, len(found))
                continue
            faces.append(ProtectedFace(label, found[0].embedding))
        log.info("protected gallery: %d faces of %d identities", len(faces), len({f.label for f in faces}))
        return cls(faces)

    def match(self, engine: IdentityEngine, views: list[np.ndarray]) -> Match | None:
        """The closest protected face at or above the pass level, over every reference's face."""
        if not self.faces or not views:
            return None
        gallery = l2_normalize(np.stack([f.embedding for f in self.faces]))
        calibrated = np.asarray(engine.calibration(l2_normalize(np.stack(views)) @ gallery.T))
        i, j = np.unravel_index(int(np.argmax(calibrated)), calibrated.shape)
        best = float(calibrated[i, j])
        return Match(self.faces[j].label, int(i), best) if best >= engine.settings.pass_threshold else None

    def check(self, engine: IdentityEngine, views: list[np.ndarray]) -> None:
        found = self.match(engine, views)
        if found is not None:
            raise ProtectedIdentity(
                f"reference image {found.reference_index} shows a protected identity: it may not become a "
                "character (protected_identity)",
                details={"reason": "protected_identity", "index": found.reference_index},
            )


__all__ = ["Match", "ProtectedFace", "ProtectedGallery", "ProtectedIdentity"]
