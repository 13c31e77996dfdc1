"""Rendered turntable objects: textured boxes and cans seen from 72 angles, a multi-view set that is not COIL-20.

The not-in-view threshold (``matching.not_in_view_distance``) needs objects seen from several angles,
and the only real multi-view set beside the project (COIL-20 objects 1-10) is a test set. This tool
makes one from what ships inside installed wheels: the photographs of scikit-image's data folder (read
as files, as ``edge.bench.scenes`` reads them; CC0 or public domain) cut into textures, pasted on the
faces of boxes and wrapped round cans of random proportions, ray-cast in numpy with a fixed light and
turned on a turntable in 5-degree steps (COIL-20's spacing), camera 20 degrees above, black
background. Each object keeps its shape and textures in every view, so what changes between views is
what changes when a real object turns: faces come into and out of sight, the light on them changes.
What it is not: real objects (no gloss, no fine geometry, no clutter of its own); it stands in for
objects that are not the test set, and its results are reported as such.

    python tools/turntable.py --out out/data/turntable --objects 24 --seed 0
    python tools/turntable.py --out out/data/turntable-coherent --objects 24 --seed 1 --coherent
    # then: python tools/thresholds.py --images out/data/turntable/turntable.npz --no-speech

Writes ``turntable.npz`` (``images`` uint8 (N, S, S, 3) RGB, ``labels``, ``pose``: the same fields as
the shared COIL-20 archive) and ``turntable.csv`` + ``images/`` (``path,label,view``: a manifest
``showsay bench`` reads), and ``sheet.png``: the first view of each object and one object turning.
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import cv2
import numpy as np

POSES = 72  # 5 degrees apart, as COIL-20
# scikit-image's bundled colour and grey photographs and textures (skimage/data, CC0 or public domain; _fetchers.py)
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "coins.png", "brick.png", "gravel.png",
          "grass.png", "color.png", "hubble_deep_field.jpg", "motorcycle_left.png", "page.png", "text.png", "retina.jpg", "ihc.png",
          "logo.png", "moon.png", "horse.png", "immunohistochemistry.png")


def _photos() -> list[np.ndarray]:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SystemExit("scikit-image is not installed: its wheel holds the photographs (pip install scikit-image)")
    folder = Path(spec.origin).parent / "data"
    out = []
    for name in PHOTOS:
        img = cv2.imread(str(folder / name), cv2.IMREAD_COLOR)
        if img is not None and min(img.shape[:2]) >= 64:
            out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    if len(out) < 4:
        raise SystemExit(f"{folder}: fewer than 4 photographs found")
    return out


def _texture(photos: list[np.ndarray], rng: np.random.Generator, size: int = 256, photo: int | None = None) -> np.ndarray:
    """A square crop of a photograph (``photo``, else a random one), at a random scale, tinted a little."""
    img = photos[rng.integers(len(photos)) if photo is None else photo]
    h, w = img.shape[:2]
    side = int(rng.uniform(0.3, 0.9) * min(h, w))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    tex = cv2.resize(img[y : y + side, x : x + side], (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    tint = rng.uniform(0.75, 1.25, 3).astype(np.float32)
    return np.clip(tex * tint, 0, 255)


def random_object(photos: list[np.ndarray], rng: np.random.Generator, coherent: bool = False) -> dict:
    """A box (six textured faces) or a can (a wrapped label and two plain lids) of random proportions.

    ``coherent``: every face cut from one photograph (as a product's packaging keeps one design all
    round); else each face from any photograph (an object whose sides look unrelated: the harder case).
    """
    photo = int(rng.integers(len(photos))) if coherent else None
    if rng.random() < 0.5:
        half = rng.uniform([0.35, 0.5, 0.15], [0.8, 1.0, 0.6])  # x (wide), y (up), z (deep)
        return {"kind": "box", "half": half, "faces": [_texture(photos, rng, photo=photo) for _ in range(6)]}
    lid = rng.uniform(60, 230, 3).astype(np.float32)
    return {"kind": "can", "radius": rng.uniform(0.3, 0.6), "half_height": rng.uniform(0.45, 1.0),
            "side": np.concatenate([_texture(photos, rng, photo=photo), _texture(photos, rng, photo=photo)], axis=1), "lid": lid}


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = tex.shape[:2]
    return tex[np.clip((v * (h - 1)).astype(int), 0, h - 1), np.clip((u * (w - 1)).astype(int), 0, w - 1)]


def render(obj: dict, angle_deg: float, size_px: int = 128, elevation_deg: float = 20.0, supersample: int = 2) -> np.ndarray:
    """(size, size, 3) uint8 RGB: the object turned by ``angle_deg`` about its vertical axis, on black."""
    n = size_px * supersample
    el, th = np.radians(elevation_deg), np.radians(angle_deg)
    # camera on a sphere of radius 6 looking at the origin; turning the object = turning the camera the other way
    eye = 6.0 * np.array([np.sin(-th) * np.cos(el), np.sin(el), np.cos(-th) * np.cos(el)])
    fwd = -eye / np.linalg.norm(eye)
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    s = np.linspace(-1, 1, n) * np.tan(np.radians(11))  # field of view 22 degrees
    px, py = np.meshgrid(s, -s)
    d = fwd + px[..., None] * right + py[..., None] * up
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    o = np.broadcast_to(eye, d.shape)
    light = np.array([0.4, 0.8, 0.6]) / np.linalg.norm([0.4, 0.8, 0.6])
    light_cam = light - 0.3 * fwd  # some light from the camera side too
    light_cam /= np.linalg.norm(light_cam)
    colour = np.zeros(d.shape, np.float32)
    t_hit = np.full(d.shape[:2], np.inf)
    normal = np.zeros(d.shape)
    if obj["kind"] == "box":
        half = obj["half"]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / d, (half - o) / d
        tmin, tmax = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near, t_far = tmin.max(axis=-1), tmax.min(axis=-1)
        hit = (t_near <= t_far) & (t_far > 0)
        axis = tmin.argmax(axis=-1)  # the slab entered last: the face hit
        p = o + t_near[..., None] * d
        for ax in range(3):
            for sign in (-1, 1):
                m = hit & (axis == ax) & (np.sign(p[..., ax]) == sign)
                if not m.any():
                    continue
                a, b = [k for k in range(3) if k != ax]
                u = (p[m][:, a] / half[a] * sign + 1) / 2
                v = (1 - p[m][:, b] / half[b]) / 2 if b == 1 else (p[m][:, b] / half[b] + 1) / 2
                if a == 1:
                    u, v = v, u
                colour[m] = _sample(obj["faces"][2 * ax + (sign > 0)], u, v)
                nrm = np.zeros(3)
                nrm[ax] = sign
                normal[m] = nrm
                t_hit[m] = t_near[m]
    else:
        r, hh = obj["radius"], obj["half_height"]
        a = d[..., 0] ** 2 + d[..., 2] ** 2
        b = 2 * (o[..., 0] * d[..., 0] + o[..., 2] * d[..., 2])
        c = o[..., 0] ** 2 + o[..., 2] ** 2 - r * r
        disc = b * b - 4 * a * c
        with np.errstate(invalid="ignore", divide="ignore"):
            t_side = (-b - np.sqrt(disc)) / (2 * a)
        y_side = o[..., 1] + t_side * d[..., 1]
        side = (disc >= 0) & (t_side > 0) & (np.abs(y_side) <= hh)
        p = o + t_side[..., None] * d
        u = 1.0 - (np.arctan2(p[..., 2], p[..., 0]) / (2 * np.pi)) % 1.0  # seen from outside: not mirrored
        v = (hh - y_side) / (2 * hh)
        colour[side] = _sample(obj["side"], u[side], v[side])
        normal[side] = np.stack([p[..., 0], np.zeros_like(u), p[..., 2]], -1)[side] / r
        t_hit[side] = t_side[side]
        with np.errstate(invalid="ignore", divide="ignore"):
            t_cap = (np.sign(o[..., 1]) * hh - o[..., 1]) / d[..., 1]  # the lid facing the camera
        q = o + t_cap[..., None] * d
        cap = (t_cap > 0) & (q[..., 0] ** 2 + q[..., 2] ** 2 <= r * r) & (t_cap < t_hit)
        colour[cap] = obj["lid"]
        normal[cap] = [0.0, 1.0, 0.0] if eye[1] > 0 else [0.0, -1.0, 0.0]
        t_hit[cap] = t_cap[cap]
    hit = np.isfinite(t_hit)
    shade = 0.35 + 0.65 * np.clip(normal @ light_cam, 0, 1)
    img = np.where(hit[..., None], colour * shade[..., None], 0.0)
    return cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (size_px, size_px), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("out/data/turntable"))
    ap.add_argument("--objects", type=int, default=24)
    ap.add_argument("--size-px", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--coherent", action="store_true", help="all faces of an object from one photograph (default: any photograph each)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    photos = _photos()
    images, labels, poses = [], [], []
    (args.out / "images").mkdir(parents=True, exist_ok=True)
    rows = ["path,label,view"]
    for k in range(args.objects):
        obj = random_object(photos, rng, args.coherent)
        for pose in range(POSES):
            img = render(obj, 5.0 * pose, args.size_px)
            images.append(img)
            labels.append(k)
            poses.append(pose)
            name = f"images/obj{k:02d}_{pose:02d}.png"
            cv2.imwrite(str(args.out / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
            rows.append(f"{name},{k},{pose}")
        print(f"object {k}: {obj['kind']}", flush=True)
    np.savez_compressed(args.out / "turntable.npz", images=np.stack(images), labels=np.array(labels), pose=np.array(poses))
    (args.out / "turntable.csv").write_text("\n".join(rows) + "\n")
    first = [images[k * POSES] for k in range(args.objects)]
    turning = [images[p] for p in range(0, POSES, 6)]
    sheet = np.concatenate([np.concatenate(first[i : i + 12], axis=1) for i in range(0, len(first) - len(first) % 12, 12)]
                           + [np.concatenate(turning, axis=1)], axis=0)
    cv2.imwrite(str(args.out / "sheet.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: {len(images)} images of {args.objects} objects, {POSES} views each")


if __name__ == "__main__":
    main()
