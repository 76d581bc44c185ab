-- Removes every ebb table, and the tasks in them.
DROP TABLE {s}.ebb_schedules;
DROP TABLE {s}.ebb_decisions;
DROP TABLE {s}.ebb_leaders;
DROP TABLE {s}.ebb_workers;
DROP TABLE {s}.ebb_awaiters;
DROP TABLE {s}.ebb_unique_keys;
DROP TABLE {s}.ebb_queue_counters;
DROP TABLE {s}.ebb_tasks;
