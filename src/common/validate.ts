import { ValidationError, validateSync } from 'class-validator';
import { ClassConstructor } from 'class-transformer';
import { AppError } from './app-error';

/** One readable sentence out of class-validator's errors, naming the first failing field. */
export function describeValidationErrors(errors: ValidationError[], parent = ''): string {
  for (const e of errors) {
    const path = parent ? `${parent}.${e.property}` : e.property;
    const constraint = e.constraints ? Object.values(e.constraints)[0] : undefined;
    if (constraint) return constraint.replace(e.property, path);
    if (e.children?.length) return describeValidationErrors(e.children, path);
  }
  return 'invalid payload';
}

export const VALIDATOR_OPTIONS = { whitelist: true, forbidUnknownValues: true } as const;

/** Validates a Socket.IO payload against the same DTO class REST uses; throws AppError('invalid_payload'). */
export function validatePayload<T extends object>(cls: ClassConstructor<T>, payload: unknown): T {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new AppError('invalid_payload', 'payload must be an object');
  }
  // The payload's own fields onto an instance; class-validator's whitelist then strips what the DTO does not declare.
  // Not `__proto__` nor `constructor`, which no DTO declares: assigned, they would change what the instance is.
  const instance = new cls();
  const fields = instance as Record<string, unknown>;
  for (const [key, value] of Object.entries(payload)) {
    if (key !== '__proto__' && key !== 'constructor') fields[key] = value;
  }
  const errors = validateSync(instance, VALIDATOR_OPTIONS);
  if (errors.length > 0) throw new AppError('invalid_payload', describeValidationErrors(errors));
  return instance;
}
