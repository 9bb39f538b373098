"""Between processes: the message codec (``codec``), the worker pipes that carry it (``pipes``), and the
shared memory made before fork with its explicit layouts (``shm``). Nothing here knows about sessions'
meaning or user callbacks: it moves and stores bytes and integers."""
