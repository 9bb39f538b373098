"""The process model: who runs where, and how a package travels between them.

``boot`` brings a configured server up. In PROCESS mode the ``master``'s main thread accepts and its
``reactor`` threads own every connection (``connection`` is one connection's record and socket-side actions);
``dispatch`` picks the worker for each package. The ``manager`` forks and supervises the event ``worker``\\ s,
the ``task_worker``\\ s and user ``process``\\ es. The ``factory`` decides where a send, close or query goes from
whichever process asks. ``context`` is what every role is given instead of the ``Server`` facade; ``tasks`` is
the caller's side of task workers; ``callbacks``, ``timers``, ``loop`` and ``stats`` are small services of
every role.
"""
