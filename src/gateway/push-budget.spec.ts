import { PushBudget, SHED_CHECK_MS } from './push-budget';

describe('PushBudget', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('calls onCheck soon after an add takes it past half its limit (not inside the add), once for the adds of that moment', () => {
    let checks = 0;
    const budget = new PushBudget(100, () => checks++);
    budget.add(50);
    jest.advanceTimersByTime(SHED_CHECK_MS);
    expect(checks).toBe(0);
    budget.add(1);
    budget.add(60);
    expect(budget.watching).toBe(true);
    expect(checks).toBe(0);
    jest.advanceTimersByTime(0);
    expect(checks).toBe(1);
  });

  it('does not call onCheck when the bytes were given back meanwhile', () => {
    let checks = 0;
    const budget = new PushBudget(100, () => checks++);
    budget.add(150);
    budget.release(110);
    jest.advanceTimersByTime(SHED_CHECK_MS);
    expect(checks).toBe(0);
    expect(budget.bytes).toBe(40);
  });

  it('calls onCheck every SHED_CHECK_MS while still past half, and stops once under it', () => {
    let checks = 0;
    const budget = new PushBudget(100, () => checks++);
    budget.add(150);
    jest.advanceTimersByTime(0);
    budget.add(1);
    jest.advanceTimersByTime(SHED_CHECK_MS - 1);
    expect(checks).toBe(1);
    jest.advanceTimersByTime(1);
    expect(checks).toBe(2);
    jest.advanceTimersByTime(3 * SHED_CHECK_MS);
    expect(checks).toBe(5);
    budget.release(110);
    jest.advanceTimersByTime(10 * SHED_CHECK_MS);
    expect(checks).toBe(5);
    // Past it again, and checked at once (the last check was long enough ago).
    budget.add(100);
    jest.advanceTimersByTime(0);
    expect(checks).toBe(6);
  });
});
