"""Downloads on a fresh machine: without network every command ends in one line naming what is missing, from
where, and the offline route; under torchrun one process per machine downloads and the others wait for it."""
import os
import socket
import urllib.error

import numpy as np
import pytest
import torch

import common
import fid
import score_free
from conftest import write_image_folder


def one_line_error(capsys, fn):
    with pytest.raises(SystemExit) as e:
        fn()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and 'Traceback' not in '\n'.join(err)
    return err[-1]


def test_main_command_offline_names_url_and_flag_of_each_missing_input(offline, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        score_free.main(['--dataset', 'cifar10', '--device', 'cpu', '--data-dir', str(tmp_path / 'data')])
    err = capsys.readouterr().err
    assert e.value.code == 2 and 'Traceback' not in err
    line = next(l for l in err.splitlines() if 'CIFAR-10' in l)  # the pre-flight lists every missing input
    assert line.startswith('  - could not download CIFAR-10 from https://www.cs.toronto.edu/~kriz/')
    assert 'Name or service not known' in line and '--no-download' in line and str(tmp_path / 'data') in line
    assert not os.listdir(tmp_path / 'data')  # no partial file left behind


def test_fid_calc_offline_names_the_weights_and_inception_flag(offline, capsys, tmp_path):
    folder = write_image_folder(str(tmp_path / 'imgs'), n_per_class=2)
    ref = str(tmp_path / 'ref.npz')
    fid.save_stats(ref, np.zeros(4), np.eye(4), 10)
    line = one_line_error(capsys, lambda: fid.main(['calc', '--images', folder, '--ref', ref, '--device', 'cpu']))
    assert line.startswith('error: could not download the FID Inception weights from https://github.com/mseitzer')
    assert '--inception PATH' in line


def test_trainer_offline_with_fid_in_the_loop_names_fid_ref_none(offline, capsys, tiny_teacher, tmp_path):
    data, teacher = tiny_teacher
    line = one_line_error(capsys, lambda: score_free.main(['--dataset', data, '--teacher', teacher, '--device', 'cpu',
                                                           '--outdir', str(tmp_path / 'run')]))
    assert 'could not download the FID Inception weights' in line and '--fid-ref none' in line


def _worker(rank, world, port, root, result_dir, fail):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world)

    def fake_download(url, path):
        with open(os.path.join(result_dir, f'download_by_rank{rank}'), 'w'):
            pass
        if fail:
            raise urllib.error.URLError('Name or service not known')
        import time
        time.sleep(0.5)  # a slow download: the other process must wait, not read a missing file
        with open(path, 'w') as f:
            f.write('payload')
    common.download = fake_download
    target = os.path.join(root, 'file.bin')
    try:
        common.fetch('https://example.invalid/file.bin', target, 'the test file', 'pass --file PATH')
        outcome = open(target).read()
    except FileNotFoundError as e:
        outcome = f'error: {e}'
    with open(os.path.join(result_dir, f'outcome_rank{rank}'), 'w') as f:
        f.write(outcome)
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize('fail', [False, True])
def test_torchrun_downloads_once_and_every_process_sees_the_result(tmp_path, fail):
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    root, results = tmp_path / 'cache', tmp_path / 'results'
    root.mkdir()
    results.mkdir()
    mp.spawn(_worker, args=(2, port, str(root), str(results), fail), nprocs=2, join=True)
    assert sorted(os.listdir(results))[:1] == ['download_by_rank0'] and not (results / 'download_by_rank1').exists()
    outcomes = [(results / f'outcome_rank{r}').read_text() for r in range(2)]
    if fail:
        assert all(o.startswith('error: could not download the test file') and 'pass --file PATH' in o
                   for o in outcomes)
    else:
        assert outcomes == ['payload', 'payload']
