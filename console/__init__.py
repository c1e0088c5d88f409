"""ServeDeck desktop console (PySide6 + pyqtgraph).

Pages never touch the network: they ask ``tasks.TaskRunner`` to run a ``client.ApiClient``
call in the background and get the result back as a Qt signal on the UI thread.
"""
