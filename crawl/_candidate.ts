/** One (image URL, alt-text) pair found by a source, before it is fetched. */
export interface Candidate {
  /** Absolute http(s) URL of the image. */
  url: string;
  /** The alt-text, entities decoded and whitespace collapsed; '' only with `keepEmptyAlt`. */
  caption: string;
  /** The page the image was found on, or null for URL lists. */
  pageUrl: string | null;
}
