import pytest

from halo_seg.engine.partition import PartitionError, PartitionPlan, factor_grid, parse_grid


def test_blocks_tile_the_padded_volume_and_align_to_chunks():
    plan = PartitionPlan((37, 50, 43), (3, 2, 4), multiple=4)
    assert plan.padded == (40, 52, 44)
    seen = set()
    for r in plan.ranks():
        blk = plan.block(r)
        for a, s in enumerate(blk):
            assert s.start % 4 == 0 and s.stop % 4 == 0          # pooling lines up across ranks
            assert s.start % plan.chunks[a] == 0                 # chunk-aligned writes
        seen.add(tuple((s.start, s.stop) for s in blk))
    assert len(seen) == 24
    vox = sum((b[0].stop - b[0].start) * (b[1].stop - b[1].start) * (b[2].stop - b[2].start)
              for b in plan.all_blocks())
    assert vox == 40 * 52 * 44


def test_uneven_split_keeps_every_rank_nonempty():
    # 5 units over 4 ranks: ceil(5/4)=2 would leave the last rank empty, so blocks are 1,1,1,2 units
    plan = PartitionPlan((20, 8, 8), (4, 1, 1), multiple=4)
    assert plan.bounds(0) == [(0, 4), (4, 8), (8, 12), (12, 20)]
    assert plan.valid_block(3)[0] == slice(12, 20)


def test_neighbours_and_coords_roundtrip():
    plan = PartitionPlan((16, 16, 16), (2, 2, 2), multiple=2)
    for r in plan.ranks():
        assert plan.rank_of(plan.coords(r)) == r
    assert plan.neighbour(0, 0, -1) is None and plan.neighbour(0, 0, +1) == 4
    assert plan.neighbour(0, 2, +1) == 1 and plan.neighbour(7, 1, +1) is None


def test_errors_name_the_problem():
    with pytest.raises(PartitionError, match="larger than the volume"):
        PartitionPlan((8, 64, 64), (4, 1, 1), multiple=4)
    with pytest.raises(PartitionError, match="3D"):
        PartitionPlan((8, 8), (1, 1, 1))
    with pytest.raises(PartitionError, match="positive"):
        PartitionPlan((8, 8, 8), (0, 1, 1))
    with pytest.raises(PartitionError, match="PZ,PY,PX"):
        parse_grid("a,b")
    assert parse_grid("2x2x2") == (2, 2, 2) and parse_grid("4") == (4, 1, 1)


def test_factor_grid_prefers_cubic_blocks():
    assert factor_grid(8, (128, 128, 128)) == (2, 2, 2)
    assert factor_grid(2, (256, 64, 64)) == (2, 1, 1)


def test_auto_grid_is_parsed_and_grids_respect_the_block_multiple():
    from halo_seg.engine.partition import AUTO
    assert parse_grid("auto") == parse_grid(" AUTO ") == AUTO
    assert factor_grid(4, (8, 64, 64), 8) == (1, 2, 2)      # one 8-voxel block along z at most
    assert factor_grid(4, (8, 8, 8), 8) is None
    for world, shape in ((8, (40, 200, 96)), (6, (64, 64, 200)), (3, (24, 24, 24))):
        g = factor_grid(world, shape, 8)
        assert g[0] * g[1] * g[2] == world
        PartitionPlan(shape, g, 8)                           # a valid partition
