import { UserError } from '../errors.js';
import { classifyTask } from './classify.js';
import { denseTask } from './dense.js';
import { detectTask } from './detect.js';
import { segmentTask } from './segment.js';
import { TASK_NAMES, type Task, type TaskName } from './types.js';

/** Every task, by name: a file per task and a line here, as the ops are registered. */
const TASKS: Record<TaskName, Task<any, any>> = {
  classify: classifyTask,
  detect: detectTask,
  segment: segmentTask,
  dense: denseTask,
};

export function taskFor(name: string): Task<unknown, unknown> {
  const task = (TASKS as Record<string, Task<unknown, unknown>>)[name];
  if (!task) throw new UserError(`unknown task '${name}' (known: ${TASK_NAMES.join(', ')})`);
  return task;
}

export function registeredTasks(): readonly Task<unknown, unknown>[] {
  return TASK_NAMES.map((n) => TASKS[n]);
}
