"""Where items come from: image files and folders, frame sequences and videos."""
