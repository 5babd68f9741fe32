// BioVoxxel "Particle Distribution (2D)" (centroid NND) in the ImageJ macro language.
//
// Reproduces Particle_Distribution2D.java of the BioVoxxel Toolbox (Jan Brocher, BioVoxxel) step
// by step, without the toolbox, so the thesis's Table 9 can be checked in a stock ImageJ 1.x.
// Part of tio2fiji (tio2fiji/distribution/_biovoxxel.py has the same procedure in Python; both are
// compared in tests/test_distribution.py and benchmarks/distribution/distribution_bam.py).
//
// This test is reproduced, not recommended: it uses the expected random nearest-neighbour
// distance E = 0.5*sqrt(A/n) as a variance, has no edge correction, and classes truly random
// patterns as "clustering". See docs/imagej-spec.md, sections B and C.
//
// Input: the current image. Particles are the 8-connected groups of nonzero pixels, i.e. what
// Analyze Particles finds on an Ultimate Points image after setThreshold(1, 255) and
// "Convert to Mask" (or on a binary mask with Black background). Centroids are the pixel means
// + 0.5, multiplied by the pixel size (calibrated, as BioVoxxel's results table), while the area
// A is the image's width x height in pixels, as in BioVoxxel.
//
// Arguments (getArgument(), space separated, all optional):
//   statistic=median|mean        BioVoxxel's "statistical method" (default median)
//   alpha=0.05|0.01|0.001        BioVoxxel's confidence 95%, 99%, 99.9% (default 0.05)
//   java_student_bug=1|0         1 (default): Student branch as the Java plugin, sqrt(2/n) with
//                                integer division (T infinite for n >= 3); 0: sqrt(2.0/n)
//
// Output: BioVoxxel's Log lines (print), and the return value "key=value;key=value;..." with
// full double precision, read by tio2fiji.distribution.biovoxxel_test_imagej.
//
// Pure macro code (no run(...) menu commands), so it also runs in a headless ImageJ.
// Usage in Fiji/ImageJ: open the UEP image, Plugins > Macros > Run..., or
// runMacro("/path/BioVoxxel_Particle_Distribution.ijm", "statistic=median alpha=0.05");

function argValue(args, key, fallback) {
    parts = split(args, " ");
    for (i = 0; i < parts.length; i++) {
        if (startsWith(parts[i], key + "="))
            return substring(parts[i], lengthOf(key) + 1);
    }
    return fallback;
}

function fmt(x) {
    return String.format("%.17g", x);
}

args = getArgument();
statistic = argValue(args, "statistic", "median");
alpha = parseFloat(argValue(args, "alpha", "0.05"));
studentBug = parseInt(argValue(args, "java_student_bug", "1"));
if (statistic != "median" && statistic != "mean")
    exit("statistic must be median or mean, not " + statistic);

// BioVoxxel's critical values: F(1-alpha; k, k) and one-sided t(1-alpha, k) for
// k = 10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000 (copied from Particle_Distribution2D.java)
if (abs(alpha - 0.05) < 1e-12) {
    criticalF = newArray(2.978237016, 1.840871688, 1.53431418, 1.391719552, 1.158655374, 1.109688288, 1.076352036, 1.061912029, 1.053397886, 1.047627319);
    criticalT = newArray(1.812461102, 1.697260851, 1.670648865, 1.660234327, 1.647906854, 1.646378818, 1.645615867, 1.645361708, 1.645234659, 1.645158438);
    chosenCI = "95%";
} else if (abs(alpha - 0.01) < 1e-12) {
    criticalF = newArray(4.849146802, 2.385967353, 1.836259361, 1.597669125, 1.231664935, 1.158625448, 1.109682472, 1.088680123, 1.076352997, 1.068021936);
    criticalT = newArray(2.763769458, 2.457261531, 2.390119457, 2.364217356, 2.333828914, 2.330082625, 2.328213787, 2.327591515, 2.32728048, 2.327093897);
    chosenCI = "99%";
} else if (abs(alpha - 0.001) < 1e-12) {
    criticalF = newArray(8.753866276, 3.217090322, 2.252265545, 1.867401382, 1.319136791, 1.216098723, 1.148287469, 1.1194961, 1.102684079, 1.091358502);
    criticalT = newArray(4.143700493, 3.385184866, 3.231709121, 3.173739481, 3.106611618, 3.098402156, 3.09431229, 3.092951196, 3.092271061, 3.091863111);
    chosenCI = "99.9%";
} else {
    exit("alpha must be 0.05, 0.01 or 0.001, not " + alpha);
}
bins = newArray(10, 30, 60, 100, 500, 1000, 2000, 3000, 4000, 5000);

// ---- 1. particles: 8-connected groups of nonzero pixels, in raster order (as ParticleAnalyzer)
w = getWidth();
h = getHeight();
getPixelSize(unit, pw, ph);
nFg = 0;
for (y = 0; y < h; y++)
    for (x = 0; x < w; x++)
        if (getPixel(x, y) != 0) nFg++;
if (nFg == 0) exit("no particles (nonzero pixels) in the image");
visited = newArray(w * h);
queue = newArray(nFg);
cx = newArray(nFg);
cy = newArray(nFg);
n = 0;
for (y = 0; y < h; y++) {
    for (x = 0; x < w; x++) {
        if (getPixel(x, y) == 0 || visited[x + y * w] == 1) continue;
        visited[x + y * w] = 1;
        queue[0] = x + y * w;
        qLen = 1;
        qi = 0;
        xsum = 0;
        ysum = 0;
        while (qi < qLen) {
            p = queue[qi];
            px = p % w;
            py = floor(p / w);
            xsum += px;
            ysum += py;
            for (dy = -1; dy <= 1; dy++) {
                for (dx = -1; dx <= 1; dx++) {
                    x2 = px + dx;
                    y2 = py + dy;
                    if (x2 >= 0 && x2 < w && y2 >= 0 && y2 < h) {
                        if (visited[x2 + y2 * w] == 0 && getPixel(x2, y2) != 0) {
                            visited[x2 + y2 * w] = 1;
                            queue[qLen] = x2 + y2 * w;
                            qLen++;
                        }
                    }
                }
            }
            qi++;
        }
        // ImageJ's centroid: pixel mean + 0.5, then calibrated
        cx[n] = (xsum / qLen + 0.5) * pw;
        cy[n] = (ysum / qLen + 0.5) * ph;
        n++;
    }
}
if (n < 2) exit("the test needs at least 2 particles, found " + n);

// ---- 2. theoretical random NND; BioVoxxel also uses it as the variance
imageArea = w * h;
E = 0.5 * sqrt(imageArea / n);
print("Theoretical random nearest neighbor distance = " + fmt(E));
print("Variance = " + fmt(E));
print("StdDev = " + fmt(sqrt(E)));

// ---- 3. nearest-neighbour distances, brute force as BioVoxxel
nnd = newArray(n);
for (i = 0; i < n; i++) {
    for (j = 0; j < n; j++) {
        d = sqrt(pow(cx[i] - cx[j], 2) + pow(cy[i] - cy[j], 2));
        if ((i == 0 && j == 1) || (i != 0 && j == 0))
            nnd[i] = d;
        else if (i != j && nnd[i] > d)
            nnd[i] = d;
    }
}
nnSum = 0;
for (i = 0; i < n; i++) nnSum += nnd[i];
nnMean = nnSum / n;

// ---- 4. median and the spreads around mean and median (over the sorted distances)
Array.sort(nnd);
if (n % 2 == 0)
    nnMedian = (nnd[n / 2] + nnd[n / 2 - 1]) / 2;
else
    nnMedian = nnd[floor(n / 2)];
diffMean = 0;
diffMedian = 0;
for (i = 0; i < n; i++) {
    diffMean += pow(nnd[i] - nnMean, 2);
    diffMedian += pow(nnd[i] - nnMedian, 2);
}
varMean = diffMean / n;
varMedian = diffMedian / n;
print("Measured average nearest neighbor distance = " + fmt(nnMean));
print("Variance (mean) = " + fmt(varMean));
print("StdDev (mean) = " + fmt(sqrt(varMean)));
print("Measured median nearest neighbor distance = " + fmt(nnMedian));
print("Variance (median) = " + fmt(varMedian));
print("StdDev (median) = " + fmt(sqrt(varMedian)));
print("--------------------------------------------------------------------------");
print("Sample size n = " + n);

if (statistic == "median") {
    testValue = nnMedian;
    testVariance = varMedian;
} else {
    testValue = nnMean;
    testVariance = varMean;
}

// ---- 5. F test picks Welch or Student; n's bins are 11-30, 31-60, ..., >= 5001
F = maxOf(E, testVariance) / minOf(E, testVariance);
nBin = -1;
for (k = 0; k < bins.length; k++)
    if (n - 1 >= bins[k]) nBin = k;
if (nBin >= 0) critF = criticalF[nBin]; else critF = NaN;
if (n >= 11 && F >= critF) {
    test = "Welch's t-test";
    T = abs(E - testValue) / (sqrt((E / n) + (testVariance / n)));
    df = floor((pow((E / n) + (testVariance / n), 2)) / ((pow(E / n, 2) / (n - 1)) + (pow(testVariance / n, 2) / (n - 1))));
    print("d.f. = " + df);
    print("t = " + fmt(T) + " (Welch's t-test)");
} else {
    test = "Student's t-test";
    if (studentBug == 1) twoOverN = floor(2 / n); else twoOverN = 2 / n;  // Java: int 2/n
    T = (abs(E - testValue)) / (sqrt(0.5 * (E + testVariance)) * sqrt(twoOverN));
    df = (2 * n) - 2;
    print("d.f.: " + df);
    print("t = " + fmt(T) + " (Student's t-test)");
}

// ---- 6. one-sided critical t from df's bin; 0 below df = 10
criticalTValue = 0;
for (k = 0; k < bins.length; k++)
    if (df >= bins[k]) criticalTValue = criticalT[k];
print("critical t-value = " + fmt(criticalTValue));
print("confidence interval = " + chosenCI);
print("--------------------------------------------------------------------------");

// ---- 7. classification
significant = 0;
classification = "random";
if (T >= criticalTValue) {
    significant = 1;
    classification = "significant, no direction";
    if (testValue < E) {
        classification = "clustering";
        print("  --->   clustering particles");
    } else if (testValue > E) {
        classification = "self-avoiding";
        print("  --->   self-avoiding particles");
    }
    print("significant different from random distribution with p < " + alpha);
} else {
    print("  --->   random particle distribution");
    print("no significant difference to random distribution (p > " + alpha + ")");
}
print("according to " + statistic + " of the centroid NND distance");
print("--------------------------------------------------------------------------");

return "n=" + n + ";area=" + fmt(imageArea) + ";expected_nnd=" + fmt(E) + ";variance_random=" + fmt(E)
    + ";observed_nnd=" + fmt(testValue) + ";mean_nnd=" + fmt(nnMean) + ";median_nnd=" + fmt(nnMedian)
    + ";variance=" + fmt(testVariance) + ";F=" + fmt(F) + ";critical_F=" + fmt(critF) + ";test=" + test
    + ";statistic=" + fmt(T) + ";df=" + fmt(df) + ";critical_value=" + fmt(criticalTValue)
    + ";alpha=" + alpha + ";significant=" + significant + ";classification=" + classification;
