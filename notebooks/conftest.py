"""`pytest --nbval notebooks/` runs every chapter in the ci profile (seconds each) unless MINICLIP_PROFILE says
otherwise. The kernels nbval starts inherit this process's environment, so setting it here is enough; the
book itself (`make book`) and a reader's Jupyter session keep the cpu default of `miniclip.book.profile`."""

import os

os.environ.setdefault("MINICLIP_PROFILE", "ci")
