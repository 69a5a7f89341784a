// Errors the injector raises on purpose. The webhook answers `allowed: false` with `message`;
// `code` is stable and small enough to be a metric label.

export type InjectionErrorCode =
  | 'invalid_annotation' // a Cinch annotation has a value we cannot use
  | 'name_collision' // the pod already has a container or volume with one of Cinch's names
  | 'invalid_status' // cinch.dev/status exists but cannot be trusted to strip a previous injection
  | 'invalid_pod'; // the pod is missing something injection needs (spec, containers)

export class InjectionError extends Error {
  readonly code: InjectionErrorCode;
  /** The annotation at fault, for `invalid_annotation`. */
  readonly annotation: string | undefined;
  constructor(code: InjectionErrorCode, message: string, annotation?: string) {
    super(message);
    this.name = 'InjectionError';
    this.code = code;
    this.annotation = annotation;
  }
}

/** The injection ConfigMap is unusable; the caller keeps the last good config. `field` is a dotted path. */
export class InjectionConfigError extends Error {
  readonly field: string;
  constructor(field: string, message: string) {
    super(`injection config: ${field}: ${message}`);
    this.name = 'InjectionConfigError';
    this.field = field;
  }
}
