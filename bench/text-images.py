"""Synthetic scene-text images for bench/pretrained-text-detector.ts (no labels: the detector's own maps
are the reference). Random words in the DejaVu fonts, dark on light or light on dark, over blurred CIFAR-10
images (../shared/data/cifar10-jpg.tar, when present) or plain colours.

usage: /usr/bin/python3 bench/text-images.py OUT_DIR COUNT SEED SIZE
"""
import glob
import io
import os
import random
import sys
import tarfile

from PIL import Image, ImageDraw, ImageFilter, ImageFont

ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
CIFAR = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'data', 'cifar10-jpg.tar')


def backgrounds(limit=400):
    """Every 97th CIFAR-10 training image, as bytes (an empty list without the shared data)."""
    if not os.path.exists(CIFAR):
        return []
    out = []
    with tarfile.open(CIFAR) as t:
        for i, m in enumerate(t):
            if m.isfile() and m.name.endswith('.jpg') and '/train/' in m.name and i % 97 == 0:
                out.append(t.extractfile(m).read())
                if len(out) >= limit:
                    break
    return out


def main(out, n, seed, size):
    rng = random.Random(seed)
    fonts = sorted(glob.glob('/usr/share/fonts/truetype/dejavu/*.ttf'))
    if not fonts:
        sys.exit('no DejaVu fonts under /usr/share/fonts/truetype/dejavu (apt-get install fonts-dejavu-core)')
    bgs = backgrounds()
    os.makedirs(out, exist_ok=True)

    def word():
        return ''.join(rng.choice(ALPHABET) for _ in range(rng.randint(2, 10)))

    for i in range(n):
        if bgs and rng.random() < 0.6:
            im = Image.open(io.BytesIO(rng.choice(bgs))).convert('RGB').resize((size, size), Image.BILINEAR)
            im = im.filter(ImageFilter.GaussianBlur(rng.uniform(1, 6)))
        else:
            im = Image.new('RGB', (size, size), tuple(rng.randint(0, 255) for _ in range(3)))
        draw = ImageDraw.Draw(im)
        for _ in range(rng.randint(3, 14)):
            font = ImageFont.truetype(rng.choice(fonts), rng.randint(14, 64))
            text = ' '.join(word() for _ in range(rng.randint(1, 4)))
            x, y = rng.randint(0, size - 60), rng.randint(0, size - 30)
            # Contrast with the background where the text starts, as printed text has.
            light = sum(im.getpixel((x, y))) / 3 > 128
            colour = tuple(rng.randint(0, 70) if light else rng.randint(185, 255) for _ in range(3))
            draw.text((x, y), text, font=font, fill=colour)
        im.save(os.path.join(out, f'{i:04d}.jpg'), quality=92)


if __name__ == '__main__':
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
