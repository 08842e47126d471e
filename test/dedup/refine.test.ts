/**
 * The second pass of a match (dedup/_refine.ts) on real emoji: a copy aligns and agrees at full
 * resolution, a skin-tone variant leaves a compact colour difference, and a crop is found where
 * it lies in the registered image.
 */
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { contentBox, decodePixels } from '../../dedup/fingerprint.ts';
import { refine, SECOND_PASS, toLabImage } from '../../dedup/_refine.ts';
import { emojiFile } from '../fixtures/transforms.ts';

const white = (name: string) => sharp(readFileSync(emojiFile('twitter', name))).flatten({ background: '#ffffff' });

async function lab(bytes: Buffer) {
  const pixels = await decodePixels(bytes);
  return { image: toLabImage(pixels), box: contentBox(pixels), pixels };
}

describe('full-resolution second pass', () => {
  it('finds no compact difference between a drawing and its JPEG copy', async () => {
    const original = await lab(await white('1f469-200d-1f9bc.png').png().toBuffer());
    const copy = await lab(await white('1f469-200d-1f9bc.png').jpeg({ quality: 60 }).toBuffer());
    const r = refine(copy.image, copy.box, original.image, [original.box], false, false);
    expect(r.compactDifference).toBeLessThanOrEqual(SECOND_PASS.maxCompactDifference);
    expect(r.meanDifference).toBeLessThan(8);
  });

  it('finds the skin tone of a person in a wheelchair as a compact difference', async () => {
    const original = await lab(await white('1f469-200d-1f9bc.png').png().toBuffer());
    const variant = await lab(await white('1f469-1f3fc-200d-1f9bc.png').jpeg({ quality: 95 }).toBuffer());
    const r = refine(variant.image, variant.box, original.image, [original.box], false, false);
    expect(r.compactDifference).toBeGreaterThan(SECOND_PASS.maxCompactDifference);
  });

  it('compares a flipped copy with the mirrored drawing', async () => {
    const original = await lab(await white('1f6b6.png').png().toBuffer());
    const flipped = await lab(await white('1f6b6.png').flop().jpeg({ quality: 90 }).toBuffer());
    const mirrored = refine(flipped.image, flipped.box, original.image, [original.box], true, false);
    const direct = refine(flipped.image, flipped.box, original.image, [original.box], false, false);
    expect(mirrored.compactDifference).toBeLessThanOrEqual(SECOND_PASS.maxCompactDifference);
    expect(mirrored.meanDifference).toBeLessThan(direct.meanDifference / 2);
  });

  it('aligns a crop on where it lies in the registered drawing', async () => {
    const original = await lab(await white('1f355.png').png().toBuffer());
    const cropped = await lab(
      await white('1f355.png').extract({ left: 6, top: 3, width: 54, height: 58 }).png().toBuffer(),
    );
    // Started from the whole drawing's box, the search moves it onto the crop.
    const r = refine(cropped.image, cropped.box, original.image, [original.box], false, false);
    const expected = { x: 6 + cropped.box.x, y: 3 + cropped.box.y, w: cropped.box.w, h: cropped.box.h };
    expect(Math.abs(r.box.x - expected.x)).toBeLessThanOrEqual(1);
    expect(Math.abs(r.box.y - expected.y)).toBeLessThanOrEqual(1);
    expect(Math.abs(r.box.w - expected.w)).toBeLessThanOrEqual(1);
    expect(Math.abs(r.box.h - expected.h)).toBeLessThanOrEqual(1);
    expect(r.compactDifference).toBe(0);
  });

  it('turns the registered drawing to match a copy rotated by 3 degrees', async () => {
    const original = await lab(await white('1f6b6.png').png().toBuffer());
    const rotated = await lab(
      await white('1f6b6.png').rotate(3, { background: '#ffffff' }).jpeg({ quality: 90 }).toBuffer(),
    );
    const r = refine(rotated.image, rotated.box, original.image, [original.box], false, false);
    expect(Math.abs(r.angle)).toBeGreaterThanOrEqual(2);
    expect(Math.abs(r.angle)).toBeLessThanOrEqual(4);
    expect(r.compactDifference).toBeLessThanOrEqual(SECOND_PASS.maxCompactDifference);
  });
});
