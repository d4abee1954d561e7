# Writes the .npy files test/npy-malformed.test.ts reads back (NumPy's own writer, so the reader is
# checked against the real format). Run: python3 test/data/npy/make.py (numpy 2.x); files are committed.
import io, os
import numpy as np
here = os.path.dirname(os.path.abspath(__file__))
def save(name, a, version=None):
    with open(os.path.join(here, name), 'wb') as f:
        np.lib.format.write_array(f, a, version=version, allow_pickle=False)
save('f4-le-v1.npy', np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], dtype='<f4'), (1, 0))
save('f4-be-v2.npy', np.array([[1.5, -2.0, 3.25], [0.0, 1e-3, -7.0]], dtype='>f4'), (2, 0))
save('i8-be-v3.npy', np.array([-1, 2**40, 3], dtype='>i8'), (3, 0))
save('i4-le-v1.npy', np.arange(-3, 3, dtype='<i4').reshape(2, 3, 1), (1, 0))
save('f2-le-v1.npy', np.array([0.5, -1.0, 65504.0], dtype='<f2'), (1, 0))
save('u1-v1.npy', np.array([0, 7, 255], dtype='u1'), (1, 0))
save('i1-v1.npy', np.array([-128, 0, 127], dtype='i1'), (1, 0))
save('b1-v1.npy', np.array([True, False, True], dtype='?'), (1, 0))
save('scalar-v1.npy', np.array(4.0, dtype='<f4'), (1, 0))
save('empty-v1.npy', np.zeros((0, 3), dtype='<f4'), (1, 0))
save('f8-v1.npy', np.array([1.0], dtype='<f8'), (1, 0))
save('fortran-v1.npy', np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)), (1, 0))
save('mask-u1.npy', np.array([[0, 1], [2, 0]], dtype='u1'), (1, 0))
# column-major (fortran_order True): what np.save writes for a transposed array or np.asfortranarray
save('fortran-3d-be-v1.npy', np.asfortranarray(np.arange(24, dtype='>i4').reshape(2, 3, 4)), (1, 0))
save('transposed-f2-v1.npy', np.arange(12, dtype='<f2').reshape(3, 4).T, (1, 0))
