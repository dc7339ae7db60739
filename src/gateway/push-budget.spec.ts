import { PushBudget, SHED_CHECK_MS } from './push-budget';

describe('PushBudget', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('calls onOver soon after an add takes it past its limit (not inside the add), once for the adds of that moment', () => {
    let overs = 0;
    const budget = new PushBudget(100, () => overs++);
    budget.add(60);
    budget.add(60);
    budget.add(60);
    expect(budget.over).toBe(true);
    expect(overs).toBe(0);
    jest.advanceTimersByTime(0);
    expect(overs).toBe(1);
  });

  it('does not call onOver when the bytes were given back meanwhile', () => {
    let overs = 0;
    const budget = new PushBudget(100, () => overs++);
    budget.add(150);
    budget.release(100);
    jest.advanceTimersByTime(SHED_CHECK_MS);
    expect(overs).toBe(0);
    expect(budget.bytes).toBe(50);
  });

  it('calls onOver every SHED_CHECK_MS while still over, and stops once under', () => {
    let overs = 0;
    const budget = new PushBudget(100, () => overs++);
    budget.add(150);
    jest.advanceTimersByTime(0);
    budget.add(1);
    jest.advanceTimersByTime(SHED_CHECK_MS - 1);
    expect(overs).toBe(1);
    jest.advanceTimersByTime(1);
    expect(overs).toBe(2);
    jest.advanceTimersByTime(3 * SHED_CHECK_MS);
    expect(overs).toBe(5);
    budget.release(100);
    jest.advanceTimersByTime(10 * SHED_CHECK_MS);
    expect(overs).toBe(5);
    // Past it again, and checked at once (the last check was long enough ago).
    budget.add(100);
    jest.advanceTimersByTime(0);
    expect(overs).toBe(6);
  });
});
