import sharp, { type Metadata, type ResizeOptions } from 'sharp';
import { SkipItemError } from '../corpus/errors.ts';
import type { ResizeMode } from './options.ts';

/** How downloaded images are turned into shard JPEGs. */
export interface ImagePolicy {
  resizeMode: ResizeMode;
  imageSize: number;
  upscale: boolean;
  jpegQuality: number;
  maxPixels: number;
}

/** A decoded, resized, re-encoded image. */
export interface ProcessedImage {
  jpg: Buffer;
  width: number;
  height: number;
  /** Size of the original after EXIF orientation. */
  originalWidth: number;
  originalHeight: number;
}

// The crawl runs many images in parallel; one libvips thread per image keeps both cores busy
// without oversubscribing them.
sharp.concurrency(1);

function resizeOptions(policy: ImagePolicy): ResizeOptions | null {
  const size = policy.imageSize;
  switch (policy.resizeMode) {
    case 'no':
      return null;
    case 'keep_ratio':
      return { width: size, height: size, fit: 'outside', withoutEnlargement: !policy.upscale };
    case 'keep_ratio_largest':
      return { width: size, height: size, fit: 'inside', withoutEnlargement: !policy.upscale };
    case 'center_crop':
      return { width: size, height: size, fit: 'cover', position: 'centre' };
    case 'border':
      return { width: size, height: size, fit: 'contain', background: { r: 0, g: 0, b: 0 } };
  }
}

/**
 * Decides by decoding (never by Content-Type), guards against decompression bombs, keeps the first
 * frame of animations, applies EXIF orientation, resizes as img2dataset does (shrink-on-load does
 * the heavy lifting for JPEG) and re-encodes as JPEG. Transparent pixels are laid on white.
 */
export async function processImage(bytes: Buffer, policy: ImagePolicy): Promise<ProcessedImage> {
  let meta: Metadata;
  try {
    // Reading the header decodes no pixels, so the size check below can name the dimensions.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    const message = (err as Error).message;
    const status = /unsupported image format|bad seek|corrupt header/i.test(message) ? 'not_image' : 'decode_error';
    throw new SkipItemError(status, message, { cause: err });
  }
  const width = meta.width;
  const height = meta.height;
  if (!width || !height) throw new SkipItemError('decode_error', 'Image has no dimensions');
  if (width * height > policy.maxPixels) {
    throw new SkipItemError('too_many_pixels', `Image of ${width}x${height} px exceeds ${policy.maxPixels} pixels`);
  }
  const swapped = (meta.orientation ?? 1) >= 5;
  const originalWidth = swapped ? height : width;
  const originalHeight = swapped ? width : height;
  try {
    let pipeline = sharp(bytes, { limitInputPixels: policy.maxPixels, failOn: 'truncated', pages: 1 })
      .autoOrient()
      .flatten({ background: '#ffffff' });
    const resize = resizeOptions(policy);
    if (resize !== null) pipeline = pipeline.resize(resize);
    const { data, info } = await pipeline.jpeg({ quality: policy.jpegQuality }).toBuffer({ resolveWithObject: true });
    return { jpg: data, width: info.width, height: info.height, originalWidth, originalHeight };
  } catch (err) {
    const message = (err as Error).message;
    if (/pixel limit/i.test(message)) throw new SkipItemError('too_many_pixels', message, { cause: err });
    throw new SkipItemError('decode_error', message, { cause: err });
  }
}
