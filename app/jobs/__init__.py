"""Jobs as the API and the workers both see them, torch-free: their state in the database
(``state``), the shape of their pipeline (``plan``), sending their tasks (``dispatch``) over the
task queue (``task_queue``), and which workers are alive (``presence``).

The API imports this package and never ``worker``; the worker imports it to run the stages.
"""
