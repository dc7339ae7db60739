import { ReadBudget } from './read-budget';

describe('ReadBudget', () => {
  it('grants what is left of the budget, at least the floor, and takes back what a read held', async () => {
    const budget = new ReadBudget(100, 10);
    expect(budget.take(60)).toBe(60);
    expect(budget.take(60)).toBe(40);
    // Nothing left: the floor, so that the read still makes progress.
    expect(budget.take(60)).toBe(10);
    // A read that wants less than the floor gets what it wants.
    expect(budget.take(1)).toBe(1);
    budget.give(60);
    budget.give(40);
    budget.give(10);
    budget.give(1);
    expect(budget.take(1000)).toBe(100);
  });

  it('holds the grant for as long as the read runs, and gives it back when it fails', async () => {
    const budget = new ReadBudget(100, 10);
    let release!: () => void;
    const running = budget.with(80, (granted) => new Promise<number>((resolve) => (release = () => resolve(granted))));
    expect(budget.take(80)).toBe(20);
    budget.give(20);
    release();
    await expect(running).resolves.toBe(80);
    await expect(budget.with(50, () => Promise.reject(new Error('Redis went away')))).rejects.toThrow('Redis went away');
    expect(budget.take(1000)).toBe(100);
  });
});
